"""Envoy's stat tag extraction and ``/stats/prometheus`` rendering, as an Istio proxy is configured.

Envoy keeps every stat under one dotted name (``listener.0.0.0.0_15006.downstream_cx_overflow``).
For Prometheus it cuts tags out of that name with the bootstrap's ``stats_config.stats_tags``; Istio's
bootstrap (``tools/packaging/common/envoy_bootstrap.json``) sets ``use_all_default_tags: false`` and
lists its own specifiers, so a sidecar or gateway uses exactly those (:data:`ISTIO_STATS_TAGS`, in
its order), never Envoy's ``envoy.``-prefixed defaults. The rules, in our words:

- Each specifier is a regex searched in the *whole original* name; when it matches, its first group
  is the text to cut out and its second group (the first when there is no second) is the tag value.
  The cuts of every matching specifier are merged and removed at the end, giving the
  "tag-extracted name" shared by all series of one metric.
- A specifier whose regex begins with ``^word\\.`` (or ``^word(?=\\.)``) is only tried on names whose
  first dotted token is ``word``; the others are tried on every name, first. Within each kind the
  bootstrap's order holds, and the tags appear in the order they were found.
- The metric is ``envoy_`` plus the tag-extracted name with every character outside ``[a-zA-Z0-9_]``
  turned into ``_``; tag names are sanitised the same way. Counters come first, then gauges (then
  histograms as ``_bucket``/``_sum``/``_count``: the local proxies keep none of Envoy's own). Within
  each, metrics are sorted by tag-extracted name (dotted token by token), each as a ``# TYPE`` line,
  its series sorted by full name (``name{tags} value``, ``{}`` when untagged), and a blank line.

Istio's HTTP connection managers carry a ``;`` after their stat prefix (``inbound_0.0.0.0_8080;``,
Istio's ``DelimitedStatsPrefix``), which is what its ``http_conn_manager_prefix`` specifier looks for,
and clusters' alt stat names end in ``;`` for ``cluster_name``. So::

    http.inbound_0.0.0.0_8080;.downstream_rq_2xx: 7
    -> envoy_http_downstream_rq{response_code_class="2xx",http_conn_manager_prefix="inbound_0.0.0.0_8080"} 7
    listener.0.0.0.0_15006.downstream_cx_overflow: 1
    -> envoy_listener_downstream_cx_overflow{listener_address="0.0.0.0_15006"} 1

Example::

    text = prometheus_text([("listener.0.0.0.0_15006.downstream_cx_overflow", 1, "counter")])
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

#: Istio's bootstrap stats_tags as (tag name, regex), in the bootstrap's order. Envoy's std::regex
#: patterns written for Python: ``[:digit:]`` is ``\\d`` and matching is ASCII-only.
ISTIO_STATS_TAGS: tuple[tuple[str, str], ...] = (
    ("cluster_name", r"^cluster(\.(.+);)"),
    ("http_conn_manager_prefix", r"^http\.(([\w.]*|[\w\[\]:]*);\.)"),
    ("thread_name", r"^server(\.(.+))\.watchdog"),
    ("tcp_prefix", r"^tcp\.((.*?)\.)\w+?$"),
    ("response_code", r"_rq(_(\d{3}))$"),
    ("response_code_class", r"_rq(_(\dxx))$"),
    ("http_conn_manager_listener_prefix", r"^listener(?=\.).*?\.http\.(([_.\d]*|[_\[\]a-fA-F\d]*)\.)"),
    ("listener_address", r"^listener\.(([_.\d]*|[_\[\]a-fA-F\d]*)\.)"),
    ("mongo_prefix", r"^mongo\.(.+?)\.(collection|cmd|cx_|op_|delays_|decoding_)(.*?)$"),
    ("cache", r"(cache\.(.+?)\.)"),
    ("component", r"(component\.(.+?)\.)"),
    ("tag", r"(tag\.(.+?);\.)"),
    ("wasm_filter", r"(wasm_filter\.(.+?)\.)"),
    ("authz_enforce_result", r"rbac(\.(allowed|denied))"),
    ("authz_dry_run_action", r"(\.istio_dry_run_(allow|deny)_)"),
    ("authz_dry_run_result", r"(\.shadow_(allowed|denied))"),
)

#: the local proxies keep Envoy counters and gauges; their only histograms are Istio's (``.stats``)
_KINDS = ("counter", "gauge")
_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


def first_token(pattern: str) -> str:
    """The name token a specifier is bound to: ``http`` for ``^http\\.(...)``, ``""`` when unbound."""
    m = re.match(r"\^(\w+)(\\\.|\(\?=\\\.\))", pattern, re.ASCII)
    return m.group(1) if m else ""


class TagProducer:
    """Tag extraction for one proxy's stats; results are cached per name (the names are few and fixed)."""

    def __init__(self, specifiers: Iterable[tuple[str, str]] = ISTIO_STATS_TAGS) -> None:
        self._unbound: list[tuple[str, re.Pattern[str]]] = []
        self._bound: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
        for tag, pattern in specifiers:
            compiled = re.compile(pattern, re.ASCII)
            token = first_token(pattern)
            if token:
                self._bound.setdefault(token, []).append((tag, compiled))
            else:
                self._unbound.append((tag, compiled))
        self.extract = lru_cache(maxsize=8192)(self._extract)

    def _extract(self, name: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        """(tag-extracted name, ((tag, value), ...)) of one full stat name."""
        tags: list[tuple[str, str]] = []
        cuts: list[tuple[int, int]] = []
        token = name.split(".", 1)[0] if "." in name else None
        candidates = [*self._unbound, *(self._bound.get(token, ()) if token is not None else ())]
        for tag, regex in candidates:
            m = regex.search(name)
            if m is None or m.re.groups < 1:
                continue
            value_group = 2 if m.re.groups >= 2 else 1
            tags.append((tag, m.group(value_group) or ""))
            cuts.append(m.span(1))
        if not cuts:
            return name, tuple(tags)
        keep = [True] * len(name)
        for start, end in cuts:
            for i in range(start, end):
                keep[i] = False
        return "".join(c for c, k in zip(name, keep, strict=True) if k), tuple(tags)


def metric_name(extracted: str) -> str:
    """The Prometheus name Envoy gives a tag-extracted stat name (``envoy_`` + sanitised)."""
    return "envoy_" + _UNSAFE.sub("_", extracted)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _order(name: str) -> tuple[str, ...]:
    return tuple(name.split("."))  # Envoy's symbol table compares names token by token


_DEFAULT = TagProducer()


def prometheus_text(stats: Iterable[tuple[str, int, str]], producer: TagProducer | None = None) -> str:
    """``/stats/prometheus`` for Envoy's own stats: ``stats`` are (full name, value, counter|gauge).

    Example::

        prometheus_text([("server.live", 1, "gauge")])
        # '# TYPE envoy_server_live gauge\\nenvoy_server_live{} 1\\n\\n'
    """
    extract = (producer or _DEFAULT).extract
    groups: dict[str, dict[str, list[tuple[str, tuple[tuple[str, str], ...], int]]]] = {k: {} for k in _KINDS}
    for name, value, kind in stats:
        if kind not in groups:
            raise ValueError(f"stat {name!r}: kind {kind!r} is not a counter or gauge")
        extracted, tags = extract(name)
        groups[kind].setdefault(extracted, []).append((name, tags, value))
    out: list[str] = []
    for kind in _KINDS:
        by_name = groups[kind]
        for extracted in sorted(by_name, key=_order):
            metric = metric_name(extracted)
            out.append(f"# TYPE {metric} {kind}\n")
            for _full, tags, value in sorted(by_name[extracted], key=lambda row: _order(row[0])):
                labels = ",".join(f'{_UNSAFE.sub("_", t)}="{_escape(v)}"' for t, v in tags)
                out.append(f"{metric}{{{labels}}} {value}\n")
            out.append("\n")
    return "".join(out)


__all__ = ["ISTIO_STATS_TAGS", "TagProducer", "first_token", "metric_name", "prometheus_text"]
