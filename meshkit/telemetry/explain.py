"""Why did that request fail? One line per failed request, naming the proxy or app that answered.

Every proxy on a request's path leaves a record. The failure *originated* where a proxy answered by
itself, which shows as an Envoy response flag (``UO``, ``NR``, ``FI``…) or response-code details other
than ``via_upstream`` (a direct response, an RBAC denial); the innermost such record wins. ``DC``
(the caller went away) and ``DI`` (a delay) are consequences or decorations, used only when nothing
else is there. No proxy answer at all means the code came from the application: the innermost
record carrying the error code names the pod whose app answered.

Example::

    for line in explain(collector.records(since=time.time() - 60)):
        print(line)
    # 503 UO at preference's sidecar: circuit breaker on recommendation/version-v2 (maxConnections 1)
    # 503 at recommendation-v2-6f7c9d9b5-kq2xz: the app answered "recommendation misbehavior from '…'"
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from meshkit.telemetry.queries import GATEWAY_WORKLOADS, parse_cluster, short_service
from meshkit.telemetry.record import UNKNOWN, RequestRecord

Rec = Mapping[str, Any]

_SECONDARY = frozenset({"DC", "DI"})
_PROXY_DETAILS_OK = frozenset({"", "via_upstream"})
_BLOCKED_CLUSTERS = frozenset({"BlackHoleCluster", "block_all"})

_FLAG_TEXT = {
    "UO": "circuit breaker on {target}",
    "UH": "no healthy upstream for {target} (every host ejected or none ready)",
    "UF": "connection to {upstream} failed",
    "URX": "retries exhausted after {attempts} attempts",
    "UT": "route timeout calling {target}",
    "FI": "fault injection aborted the call to {target}",
    "DI": "fault injection delayed the call to {target}",
    "NR": "no route matched",
    "RL": "local rate limit",
    "UC": "{upstream} closed the connection",
    "UR": "{upstream} reset the stream",
    "LR": "the proxy reset the stream",
    "DC": "the caller went away before the response",
    "UAEX": "external authorization denied the request",
    "LH": "the local health check failed",
    "DPE": "the caller broke the HTTP protocol",
    "UPE": "{upstream} broke the HTTP protocol",
    "UMSDR": "maximum stream duration reached calling {target}",
    "DT": "downstream request timeout",
    "SI": "stream idle timeout",
    "IH": "invalid request header",
    "OM": "the proxy is overloaded",
    "RLSE": "rate limit service error",
}


def _as_dicts(records: Iterable[Rec | RequestRecord]) -> list[Rec]:
    return [r.to_dict() if isinstance(r, RequestRecord) else r for r in records]


def _flags(rec: Rec) -> list[str]:
    return [f for f in str(rec.get("response_flags", "-")).split(",") if f and f != "-"]


def _is_error(rec: Rec) -> bool:
    code = int(rec.get("response_code", 0))
    return code >= 400 or code == 0


def _proxy_answered(rec: Rec) -> bool:
    return (
        bool(_flags(rec))
        or str(rec.get("response_code_details", "")) not in _PROXY_DETAILS_OK
        or str(rec.get("upstream_cluster", "")) in _BLOCKED_CLUSTERS
    )


def _innermost(records: Sequence[Rec]) -> Rec:
    # later start = deeper in the chain; at equal times a server view is deeper than its caller's
    return max(records, key=lambda r: (float(r.get("start_time", 0.0)), r.get("reporter") == "destination"))


def _primary(candidates: Sequence[Rec]) -> Rec | None:
    if not candidates:
        return None
    strong = [r for r in candidates if not set(_flags(r)) <= _SECONDARY or not _flags(r)]
    return _innermost(strong or candidates)


def origin(records: Iterable[Rec | RequestRecord]) -> Rec | None:
    """The record where one request's failure originated (None when the request did not fail)."""
    chain = _as_dicts(records)
    if not chain or not _is_error(_entry(chain)):
        return None
    proxy_made = [r for r in chain if _is_error(r) and _proxy_answered(r)]
    return _primary(proxy_made) or _innermost([r for r in chain if _is_error(r)])


def flag_of_request(records: Iterable[Rec | RequestRecord]) -> str:
    """The innermost meaningful response flag of one request's records (``"-"`` when none).

    >>> flag_of_request([{"start_time": 1.0, "response_flags": "-"},
    ...                  {"start_time": 1.1, "response_flags": "UO"}])
    'UO'
    """
    flagged = [r for r in _as_dicts(records) if _flags(r)]
    rec = _primary(flagged)
    return str(rec["response_flags"]) if rec else "-"


def _entry(chain: Sequence[Rec]) -> Rec:
    return min(chain, key=lambda r: (float(r.get("start_time", 0.0)), r.get("reporter") != "source"))


def _where(rec: Rec) -> str:
    if rec.get("reporter") == "source":
        workload = str(rec.get("source_workload", UNKNOWN))
        return workload if workload in GATEWAY_WORKLOADS else f"{rec.get('source_app', UNKNOWN)}'s sidecar"
    return f"{rec.get('destination_app', UNKNOWN)}'s sidecar"


def _target(rec: Rec) -> tuple[str, str]:
    """(``service/subset`` or host, subset) of the upstream the record's proxy was calling."""
    _, _, subset, host = parse_cluster(str(rec.get("upstream_cluster", "")))
    if not host or host in _BLOCKED_CLUSTERS:
        host = str(rec.get("destination_service", UNKNOWN))
        if host == UNKNOWN:
            host = str(rec.get("authority", "")).partition(":")[0] or UNKNOWN
    name = short_service(host)
    return (f"{name}/{subset}" if subset else name), subset


def _describe_flag(flag: str, rec: Rec) -> str:
    target, subset = _target(rec)
    if flag == "NC":
        if subset:
            return f"route to subset {subset} not defined in DestinationRule"
        return f"no cluster for {rec.get('upstream_cluster') or target}"
    upstream = rec.get("upstream_pod") or rec.get("upstream_host") or target
    text = _FLAG_TEXT.get(flag, "Envoy response flag {flag}")
    return text.format(target=target, upstream=upstream, attempts=rec.get("attempts", 1), flag=flag)


def _app_answer(rec: Rec) -> tuple[str, str]:
    """(pod, what its app said) for a record whose error code came from an application."""
    if rec.get("reporter") == "destination":
        pod = str(rec.get("proxy", UNKNOWN))
    else:
        pod = str(rec.get("upstream_pod") or rec.get("upstream_host") or rec.get("destination_workload", UNKNOWN))
    body = str(rec.get("body_excerpt", "")).strip()
    said = f'the app answered "{body}"' if body else f"the app answered {rec.get('response_code')} (no proxy flag)"
    return pod, said


_LINKING = frozenset({"in", "on", "for", "of", "to", "host", "hosts", "the"})


def _once(descriptions: Iterable[str], rule: str) -> list[str]:
    """The flags' causes with the proxy's rule folded in, each cause named once.

    The rule often restates a flag's cause with details ("circuit breaker on x" and "circuit breaker
    on x (maxConnections 1)"): the longer one stands for both; a rule that starts with the same words
    adds only what it says beyond them.

    >>> _once(["circuit breaker on r/v2"], "circuit breaker on r/v2 (maxConnections 1)")
    ['circuit breaker on r/v2 (maxConnections 1)']
    >>> _once(["retries exhausted after 3 attempts"], "retries exhausted on r/v2 (2 retries)")
    ['retries exhausted after 3 attempts on r/v2 (2 retries)']
    >>> _once(["no healthy upstream for r/v2 (none ready)"], "no healthy host in r/v2")
    ['no healthy upstream for r/v2 (none ready)']
    """
    out: list[str] = []
    for desc in dict.fromkeys(descriptions):
        if rule and rule.startswith(desc):
            desc, rule = rule, ""
        elif rule and desc.startswith(rule):
            rule = ""
        elif rule:
            common = 0
            for a, b in zip(desc.split(), rule.split(), strict=False):
                if a != b:
                    break
                common += 1
            rest = rule.split()[common:]
            if common >= 2:
                # what the rule says beyond the shared words, unless it only names the same target again
                news = [w for w in rest if w not in desc.split() and w not in _LINKING]
                desc, rule = (f"{desc} {' '.join(rest)}" if news else desc), ""
        out.append(desc)
    if rule:
        out[-1:] = [f"{out[-1]} ({rule})"] if out else [rule]
    return out


def _line(chain: Sequence[Rec], rec: Rec) -> str:
    code = rec.get("response_code", 0)
    rule = str(rec.get("rule", "")).strip()
    flags = _flags(rec)
    if not _proxy_answered(rec):
        pod, said = _app_answer(rec)
        # what a proxy did about it (an outlier ejection) is noted on the caller's record
        notes = sorted({str(r.get("rule", "")).strip() for r in chain if str(r.get("rule", "")).strip()})
        return f"{code} at {pod}: {said}" + "".join(f" [{n}]" for n in notes)
    if not flags:
        details = str(rec.get("response_code_details", ""))
        if str(rec.get("upstream_cluster", "")) in _BLOCKED_CLUSTERS or str(rec.get("route_name")) == "block_all":
            host = str(rec.get("authority", "")).partition(":")[0] or _target(rec)[0]
            desc = f"REGISTRY_ONLY blocked {host} (no ServiceEntry)"
        elif details.startswith("rbac_access_denied"):
            desc = f"RBAC: access denied by AuthorizationPolicy ({details})"
        else:
            desc = f"the proxy answered itself ({details})"
        return f"{code} at {_where(rec)}: {desc}" + (f" [{rule}]" if rule else "")
    desc = "; ".join(_once([_describe_flag(f, rec) for f in flags], rule))
    if "URX" in flags:
        deeper = [
            r
            for r in chain
            if _is_error(r)
            and not _proxy_answered(r)
            and float(r.get("start_time", 0.0)) >= float(rec.get("start_time", 0.0))
        ]
        if deeper:
            pod, said = _app_answer(_innermost(deeper))
            desc += f"; last answer from {pod}: {said}"
    return f"{code} {','.join(flags)} at {_where(rec)}: {desc}"


def explain(records: Iterable[Rec | RequestRecord], limit: int = 10) -> list[str]:
    """One line per failed request (latest first, at most ``limit``): code, flag, where, and why.

    Records are grouped by ``request_id``; a request failed when its entry record (the gateway's,
    or the first proxy's) carries a 4xx/5xx code or none at all.

    Example::

        explain(records, limit=3)
        # ['404 NR at istio-ingressgateway: no route matched', ...]
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    chains: dict[str, list[Rec]] = {}
    for i, rec in enumerate(_as_dicts(records)):
        chains.setdefault(str(rec.get("request_id") or f"#{i}"), []).append(rec)
    failed = []
    for chain in chains.values():
        where = origin(chain)
        if where is not None:
            failed.append((float(_entry(chain).get("start_time", 0.0)), _line(chain, where)))
    failed.sort(key=lambda item: item[0], reverse=True)
    return [line for _, line in failed[:limit]]
