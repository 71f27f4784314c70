"""Envoy's HTTP local rate limit (``envoy.filters.http.local_ratelimit``), configured the way Istio
documents it today: an EnvoyFilter that inserts the filter into a workload's HTTP chain.

The token bucket follows Envoy's timer-based implementation
(``filters/common/local_ratelimit/local_ratelimit_impl.cc``): the bucket starts full, and every
``fill_interval`` (at least 50 ms) a timer adds ``tokens_per_fill`` tokens, capped at ``max_tokens``.
Fills are discrete — nothing trickles in between timer ticks. Each request takes one token; with none
left the request is rate limited: **429**, body ``local_rate_limited``, response flag ``RL``, plus the
configured ``response_headers_to_add`` (e.g. ``x-local-rate-limit: true``).

``filter_enabled`` and ``filter_enforced`` are runtime fractional percents; as in Envoy, leaving one
out means 0 % — the filter does nothing, or counts without refusing (shadow mode). The parsed
config lists that in ``warnings`` because it surprises people.

Example:
    >>> limit = LocalRateLimit.from_envoyfilter(envoyfilter, {"app": "recommendation"})  # doctest: +SKIP
    >>> limiter = limit.new_limiter(clock=time.monotonic)                                # doctest: +SKIP
    >>> limiter.check().allowed                                                          # doctest: +SKIP
    True
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any

from meshkit.backends.local.peerauth import ROOT_NAMESPACE
from meshkit.errors import InvalidConfig
from meshkit.resources.duration import parse_nanos

RATE_LIMITED_STATUS = 429
RATE_LIMITED_BODY = b"local_rate_limited"
RATE_LIMITED_FLAG = "RL"
RATE_LIMITED_DETAILS = "local_rate_limited"
FILTER_NAME = "envoy.filters.http.local_ratelimit"
LOCAL_RATE_LIMIT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
MIN_FILL_INTERVAL_S = 0.05
DENOMINATORS = {"HUNDRED": 100, "TEN_THOUSAND": 10_000, "MILLION": 1_000_000}


class TokenBucket:
    """Envoy's local rate limit bucket on an injected clock.

    >>> now = [0.0]
    >>> bucket = TokenBucket(2, tokens_per_fill=1, fill_interval_s=1.0, clock=lambda: now[0])
    >>> [bucket.try_take() for _ in range(3)]
    [True, True, False]
    >>> now[0] = 1.0; bucket.try_take(), bucket.try_take()
    (True, False)
    """

    def __init__(self, max_tokens: int, tokens_per_fill: int = 1, fill_interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        if max_tokens <= 0 or tokens_per_fill <= 0:
            raise InvalidConfig([f"token_bucket: max_tokens ({max_tokens}) and tokens_per_fill "
                                 f"({tokens_per_fill}) must be greater than 0"])
        if fill_interval_s < MIN_FILL_INTERVAL_S:
            raise InvalidConfig([f"token_bucket.fill_interval: {fill_interval_s}s is below Envoy's "
                                 "minimum of 50ms"])
        self.max_tokens = max_tokens
        self.tokens_per_fill = tokens_per_fill
        self.fill_interval_s = fill_interval_s
        self._clock = clock
        self._tokens = max_tokens
        self._last_fill = clock()

    def __repr__(self) -> str:
        return (f"TokenBucket(tokens={self.tokens}/{self.max_tokens}, +{self.tokens_per_fill} "
                f"every {self.fill_interval_s:g}s)")

    def _refill(self) -> None:
        # Catch up on every timer tick that would have fired since the last one we applied.
        ticks = int((self._clock() - self._last_fill) // self.fill_interval_s)
        if ticks > 0:
            self._tokens = min(self.max_tokens, self._tokens + ticks * self.tokens_per_fill)
            self._last_fill += ticks * self.fill_interval_s

    @property
    def tokens(self) -> int:
        self._refill()
        return self._tokens

    def try_take(self) -> bool:
        self._refill()
        if self._tokens == 0:
            return False
        self._tokens -= 1
        return True


@dataclass(frozen=True)
class RateLimitDecision:
    """What the filter did with one request. ``limited`` is true in shadow mode too."""

    allowed: bool
    limited: bool = False
    status: int = 0
    body: bytes = b""
    flag: str = ""
    details: str = ""
    headers: tuple[tuple[str, str], ...] = ()


def _duration_s(value: Any, where: str) -> float:
    if isinstance(value, Mapping):
        return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
    # The same grammar the resource validator accepts, so a config it admitted always compiles here.
    try:
        return parse_nanos(str(value)) / 1e9
    except ValueError:
        raise InvalidConfig([f"{where}: {value!r} is not a duration like \"60s\" or \"0.5s\""]) from None


def _percent(value: Any, where: str) -> tuple[float, bool]:
    """A runtime fractional percent as (0-100, was it set)."""
    if value is None:
        return 0.0, False
    default = (value or {}).get("default_value") or {}
    denominator = str(default.get("denominator", "HUNDRED")).upper()
    if denominator not in DENOMINATORS:
        raise InvalidConfig([f"{where}.default_value.denominator: {denominator!r} is not one of "
                             f"{', '.join(DENOMINATORS)}"])
    numerator = int(default.get("numerator", 0))
    return min(100.0, 100.0 * numerator / DENOMINATORS[denominator]), True


def _status(value: Any, where: str) -> int:
    code = (value or {}).get("code", RATE_LIMITED_STATUS)
    if isinstance(code, int) or str(code).isdigit():
        return int(code)
    # Envoy names codes in CamelCase (TooManyRequests); http.HTTPStatus uses TOO_MANY_REQUESTS.
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", str(code)).upper()
    try:
        return int(HTTPStatus[name])
    except KeyError:
        raise InvalidConfig([f"{where}.status.code: unknown HTTP status {code!r}"]) from None


def _typed_config(value: Mapping[str, Any], where: str) -> Mapping[str, Any] | None:
    typed = value.get("typed_config") or value.get("typedConfig") or {}
    kind = str(typed.get("@type", ""))
    if kind.endswith("TypedStruct"):
        if str(typed.get("type_url", "")) != LOCAL_RATE_LIMIT_TYPE:
            return None
        return typed.get("value") or {}
    if kind == LOCAL_RATE_LIMIT_TYPE:
        return {k: v for k, v in typed.items() if k != "@type"}
    if value.get("name") == FILTER_NAME:
        raise InvalidConfig([f"{where}.typed_config: expected @type {LOCAL_RATE_LIMIT_TYPE} "
                             "(directly or in a TypedStruct)"])
    return None


@dataclass(frozen=True)
class Action:
    """One Envoy rate-limit action: ``header_value_match`` (descriptor ``header_match``) or
    ``remote_address`` (descriptor ``remote_address``)."""

    key: str
    value: str = ""
    headers: tuple[tuple[str, str, str], ...] = ()  # (header, kind: exact|prefix|suffix|contains|regex|present, text)
    expect_match: bool = True

    def entry(self, path: str, headers: Mapping[str, str], remote: str) -> tuple[str, str] | None:
        if self.key == "remote_address":
            return ("remote_address", remote)
        matched = all(_header_matches(name, kind, text, path, headers) for name, kind, text in self.headers)
        return ("header_match", self.value) if matched == self.expect_match else None


def _header_matches(name: str, kind: str, text: str, path: str, headers: Mapping[str, str]) -> bool:
    value = path if name == ":path" else headers.get(name.lower())
    if value is None:
        return False
    return {
        "prefix": lambda: value.startswith(text),
        "exact": lambda: value == text,
        "suffix": lambda: value.endswith(text),
        "contains": lambda: text in value,
        "regex": lambda: re.fullmatch(text, value) is not None,
        "present": lambda: True,
        "prefix_ci": lambda: value.lower().startswith(text.lower()),
        "exact_ci": lambda: value.lower() == text.lower(),
    }.get(kind, lambda: False)()


@dataclass(frozen=True)
class DescriptorLimit:
    """A descriptor of the local rate limit config with its own bucket."""

    entries: tuple[tuple[str, str], ...]
    max_tokens: int
    tokens_per_fill: int
    fill_interval_s: float


def _header_spec(header: Mapping[str, Any]) -> tuple[str, str, str]:
    name = str(header.get("name", ""))
    sm = header.get("string_match") or {}
    ci = "_ci" if sm.get("ignore_case") else ""
    for kind in ("exact", "prefix", "suffix", "contains"):
        if kind in sm:
            return (name, kind + (ci if kind in ("exact", "prefix") else ""), str(sm[kind]))
    if "safe_regex" in sm:
        return (name, "regex", str((sm["safe_regex"] or {}).get("regex", "")))
    for kind in ("exact", "prefix", "suffix", "contains"):
        if f"{kind}_match" in header:
            return (name, kind, str(header[f"{kind}_match"]))
    if "safe_regex_match" in header:
        return (name, "regex", str((header["safe_regex_match"] or {}).get("regex", "")))
    return (name, "present", "")


def _actions(route: Mapping[str, Any]) -> tuple[tuple[Action, ...], ...]:
    out = []
    for limit in route.get("rate_limits") or []:
        group = []
        for action in (limit or {}).get("actions") or []:
            if "remote_address" in action:
                group.append(Action("remote_address"))
            elif "header_value_match" in action:
                hvm = action["header_value_match"] or {}
                group.append(
                    Action(
                        "header_match",
                        str(hvm.get("descriptor_value", "")),
                        tuple(_header_spec(h) for h in hvm.get("headers") or []),
                        bool(hvm.get("expect_match", True)),
                    )
                )
        out.append(tuple(group))
    return tuple(out)


def _vhost_port(patch: Mapping[str, Any]) -> int | None:
    """The port of an inbound vhost name (``inbound|http|8080``), when the patch names one."""
    name = str(((((patch.get("match") or {}).get("routeConfiguration") or {}).get("vhost")) or {}).get("name", ""))
    parts = name.split("|")
    return int(parts[2]) if len(parts) == 3 and parts[2].isdigit() else None


@dataclass(frozen=True)
class LocalRateLimit:
    """One workload's local rate limit, parsed from an EnvoyFilter at config time."""

    name: str
    namespace: str
    stat_prefix: str
    max_tokens: int
    tokens_per_fill: int
    fill_interval_s: float
    enabled_percent: float = 0.0
    enforced_percent: float = 0.0
    response_headers: tuple[tuple[str, str], ...] = ()
    context: str = "ANY"
    status: int = RATE_LIMITED_STATUS
    warnings: tuple[str, ...] = field(default=(), compare=False)
    #: per-route form: the route's ``rate_limits`` actions and the config's descriptor buckets
    actions: tuple[tuple[Action, ...], ...] = ()
    descriptors: tuple[DescriptorLimit, ...] = ()
    always_consume_default: bool = True

    @classmethod
    def from_envoyfilter(
        cls,
        resource: Mapping[str, Any],
        labels: Mapping[str, str],
        namespace: str | None = None,
        root_namespace: str = ROOT_NAMESPACE,
        port: int = 8080,
    ) -> LocalRateLimit | None:
        """The local rate limit this EnvoyFilter gives a workload with ``labels``, or None.

        With ``namespace``, the filter must live in it or in the root namespace to apply. A per-route
        config (``applyTo: HTTP_ROUTE``) applies when its inbound vhost names the workload's ``port``.
        """
        if resource.get("kind") != "EnvoyFilter":
            return None
        meta, spec = resource.get("metadata") or {}, resource.get("spec") or {}
        res_ns, name = str(meta.get("namespace", "default")), str(meta.get("name", "?"))
        if namespace is not None and res_ns not in (namespace, root_namespace):
            return None
        selector = (spec.get("workloadSelector") or {}).get("labels") or {}
        if not all(labels.get(k) == str(v) for k, v in selector.items()):
            return None
        where = f"EnvoyFilter {res_ns}/{name}"
        listener: tuple[Mapping[str, Any], str, str] | None = None
        route: tuple[Mapping[str, Any], Mapping[str, Any], str] | None = None
        for i, patch in enumerate(spec.get("configPatches") or []):
            at = f"{where}: configPatches[{i}]"
            value = (patch.get("patch") or {}).get("value") or {}
            context = str(((patch.get("match") or {}).get("context")) or "ANY")
            if patch.get("applyTo") == "HTTP_ROUTE":
                per_route = (value.get("typed_per_filter_config") or {}).get(FILTER_NAME)
                if isinstance(per_route, Mapping) and _vhost_port(patch) in (None, port):
                    config = _typed_config({"typed_config": per_route}, f"{at}.patch.value.typed_per_filter_config")
                    if config is not None:
                        route = (config, value.get("route") or {}, f"{at}.patch.value.typed_per_filter_config")
                continue
            if patch.get("applyTo") != "HTTP_FILTER" or listener is not None:
                continue
            config = _typed_config(value, f"{at}.patch.value")
            if config is not None:
                listener = (config, context, f"{at}.patch.value.typed_config.value")
        if listener is None:
            return None
        config, context, at = listener
        if route is not None:
            # Istio's sample: the filter is inserted with a stat_prefix only; the route carries the bucket
            route_config, route_value, route_at = route
            parsed = cls._parse(route_config, name, res_ns, context, route_at)
            return replace(
                parsed,
                actions=_actions(route_value),
                descriptors=cls._descriptors(route_config, route_at),
                always_consume_default=bool(route_config.get("always_consume_default_token_bucket", True)),
            )
        if "token_bucket" not in config:
            return None  # a filter without a bucket of its own limits nothing until a route gives one
        return cls._parse(config, name, res_ns, context, at)

    @staticmethod
    def _descriptors(config: Mapping[str, Any], where: str) -> tuple[DescriptorLimit, ...]:
        out = []
        for j, item in enumerate(config.get("descriptors") or []):
            bucket = (item or {}).get("token_bucket") or {}
            entries = tuple((str(e.get("key", "")), str(e.get("value", ""))) for e in item.get("entries") or [])
            out.append(
                DescriptorLimit(
                    entries,
                    int(bucket.get("max_tokens", 1)),
                    int(bucket.get("tokens_per_fill", 1)),
                    _duration_s(bucket.get("fill_interval", "1s"), f"{where}.descriptors[{j}].token_bucket"),
                )
            )
        return tuple(out)

    @classmethod
    def _parse(
        cls, config: Mapping[str, Any], name: str, ns: str, context: str, where: str
    ) -> LocalRateLimit:
        bucket = config.get("token_bucket")
        if not isinstance(bucket, Mapping):
            problem = f"{where}.token_bucket: required (max_tokens, tokens_per_fill, fill_interval)"
            raise InvalidConfig([problem])
        if "fill_interval" not in bucket:
            raise InvalidConfig([f"{where}.token_bucket.fill_interval: required"])
        try:
            max_tokens = int(bucket.get("max_tokens", 0))
            per_fill = int(bucket.get("tokens_per_fill", 1))
        except (TypeError, ValueError):
            problem = f"{where}.token_bucket: max_tokens and tokens_per_fill must be integers"
            raise InvalidConfig([problem]) from None
        interval = _duration_s(bucket["fill_interval"], f"{where}.token_bucket.fill_interval")
        try:
            TokenBucket(max_tokens, per_fill, interval, clock=lambda: 0.0)  # validates like Envoy does
        except InvalidConfig as exc:
            raise InvalidConfig([f"{where}.{problem}" for problem in exc.problems]) from None
        enabled, enabled_set = _percent(config.get("filter_enabled"), f"{where}.filter_enabled")
        enforced, enforced_set = _percent(config.get("filter_enforced"), f"{where}.filter_enforced")
        warnings = []
        if not enabled_set:
            warnings.append(f"{where}: filter_enabled is not set, so Envoy leaves the filter disabled")
        elif not enforced_set:
            warnings.append(f"{where}: filter_enforced is not set, so Envoy counts but never refuses")
        headers = []
        for j, item in enumerate(config.get("response_headers_to_add") or []):
            header = (item or {}).get("header") or {}
            if "key" not in header:
                raise InvalidConfig([f"{where}.response_headers_to_add[{j}].header.key: required"])
            headers.append((str(header["key"]).lower(), str(header.get("value", ""))))
        return cls(
            name=name, namespace=ns, stat_prefix=str(config.get("stat_prefix", "")),
            max_tokens=max_tokens, tokens_per_fill=per_fill, fill_interval_s=interval,
            enabled_percent=enabled, enforced_percent=enforced, response_headers=tuple(headers),
            context=context, status=_status(config.get("status"), where), warnings=tuple(warnings),
        )

    def new_limiter(self, clock: Callable[[], float] = time.monotonic,
                    rng: random.Random | None = None) -> LocalRateLimiter:
        """A fresh limiter (full bucket); one per workload proxy, shared by all its connections."""
        return LocalRateLimiter(self, clock, rng or random.Random())


class LocalRateLimiter:
    """The running filter: a bucket plus Envoy's counters (``<stat_prefix>.http_local_rate_limit.*``)."""

    def __init__(self, config: LocalRateLimit, clock: Callable[[], float], rng: random.Random):
        self.config = config
        self.bucket = TokenBucket(config.max_tokens, config.tokens_per_fill, config.fill_interval_s, clock)
        self.descriptor_buckets = [
            (d.entries, TokenBucket(d.max_tokens, d.tokens_per_fill, d.fill_interval_s, clock))
            for d in config.descriptors
        ]
        self._rng = rng
        self.counters = {"enabled": 0, "ok": 0, "rate_limited": 0, "enforced": 0}

    def __repr__(self) -> str:
        return f"LocalRateLimiter({self.config.namespace}/{self.config.name}, {self.bucket!r})"

    def _sample(self, percent: float) -> bool:
        if percent >= 100.0:
            return True
        return percent > 0.0 and self._rng.random() * 100.0 < percent

    def stats(self) -> dict[str, int]:
        prefix = f"{self.config.stat_prefix}.http_local_rate_limit"
        return {f"{prefix}.{name}": value for name, value in self.counters.items()}

    def _descriptor_buckets(self, path: str, headers: Mapping[str, str], remote: str) -> list[TokenBucket]:
        produced = set()
        for group in self.config.actions:
            entries = [a.entry(path, headers, remote) for a in group]
            if group and all(e is not None for e in entries):
                produced.add(tuple(e for e in entries if e is not None))
        return [bucket for entries, bucket in self.descriptor_buckets if entries in produced]

    def check(self, path: str = "/", headers: Mapping[str, str] | None = None, remote: str = "") -> RateLimitDecision:
        """Run the filter for one request (path, headers and client address feed the descriptors)."""
        if not self._sample(self.config.enabled_percent):
            return RateLimitDecision(allowed=True)
        self.counters["enabled"] += 1
        matched = self._descriptor_buckets(path, headers or {}, remote) if self.descriptor_buckets else []
        # as Envoy: matching descriptors first (an empty one limits the request and leaves the default
        # bucket alone), then the default bucket unless always_consume_default_token_bucket is false
        ok = all(bucket.try_take() for bucket in matched)
        if ok and (not matched or self.config.always_consume_default):
            ok = self.bucket.try_take()
        if ok:
            self.counters["ok"] += 1
            return RateLimitDecision(allowed=True)
        self.counters["rate_limited"] += 1
        if not self._sample(self.config.enforced_percent):
            return RateLimitDecision(allowed=True, limited=True)
        self.counters["enforced"] += 1
        return RateLimitDecision(
            allowed=False, limited=True, status=self.config.status, body=RATE_LIMITED_BODY,
            flag=RATE_LIMITED_FLAG, details=RATE_LIMITED_DETAILS, headers=self.config.response_headers,
        )
