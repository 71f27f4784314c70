"""Envoy's tag extraction with Istio's bootstrap specifiers, and the ``/stats/prometheus`` layout.

The expected names and labels are written out by hand from Envoy's rules (``stats_tags.py``); the
whole-proxy view over a real mesh is in ``tests/local/test_limits.py``.
"""

from __future__ import annotations

import pytest

from meshkit.backends.local.proxy.stats_tags import TagProducer, first_token, prometheus_text

REC = "outbound|8080||recommendation.tutorial.svc.cluster.local"


@pytest.mark.parametrize(("name", "extracted", "tags"), [
    (f"cluster.{REC};.upstream_rq_5xx", "cluster.upstream_rq",
     (("cluster_name", REC), ("response_code_class", "5xx"))),
    (f"cluster.{REC};.upstream_rq_503", "cluster.upstream_rq", (("cluster_name", REC), ("response_code", "503"))),
    (f"cluster.{REC};.upstream_rq_pending_overflow", "cluster.upstream_rq_pending_overflow", (("cluster_name", REC),)),
    # the class is found before the prefix although the bootstrap lists the prefix first: specifiers
    # bound to a first token ("http") run after the unbound ones
    ("http.inbound_0.0.0.0_8080;.downstream_rq_4xx", "http.downstream_rq",
     (("response_code_class", "4xx"), ("http_conn_manager_prefix", "inbound_0.0.0.0_8080"))),
    ("http.inbound_0.0.0.0_8080.downstream_rq_total", "http.inbound_0.0.0.0_8080.downstream_rq_total", ()),  # no ;
    ("listener.0.0.0.0_15006.downstream_cx_overflow", "listener.downstream_cx_overflow",
     (("listener_address", "0.0.0.0_15006"),)),
    ("listener.[__]_15006.downstream_cx_total", "listener.downstream_cx_total", (("listener_address", "[__]_15006"),)),
    ("server.live", "server.live", ()),
])
def test_istio_specifiers_cut_tags_out_of_names(name: str, extracted: str, tags: tuple[tuple[str, str], ...]) -> None:
    assert TagProducer().extract(name) == (extracted, tags)


def test_a_bound_specifier_is_tried_only_on_its_first_token_and_cuts_merge() -> None:
    assert first_token(r"^http\.(x)") == "http" and first_token(r"^listener(?=\.).*") == "listener"
    assert first_token(r"^cluster(\.(.+);)") == "" and first_token(r"_rq(_(\d{3}))$") == ""
    bound = TagProducer([("p", r"^http\.((\w+)\.)")])
    assert bound.extract("cluster.http.a.b") == ("cluster.http.a.b", ())
    assert bound.extract("http.a.b") == ("http.b", (("p", "a"),))
    # no second group: the value is the cut itself; overlapping cuts are removed once
    both = TagProducer([("v", r"(_v\d)$"), ("w", r"(x_v)\d$")])
    assert both.extract("a.x_v1") == ("a.", (("v", "_v1"), ("w", "x_v")))


def test_prometheus_text_is_counters_then_gauges_grouped_sorted_and_blank_line_separated() -> None:
    text = prometheus_text([
        ("server.live", 1, "gauge"),
        ("http.outbound_0.0.0.0_8080;.downstream_rq_2xx", 5, "counter"),
        ("http.inbound_0.0.0.0_8080;.downstream_rq_2xx", 7, "counter"),
        ("http.inbound_0.0.0.0_8080;.downstream_rq_4xx", 1, "counter"),
        ("listener.0.0.0.0_15006.downstream_cx_overflow", 2, "counter"),
        ("listener.0.0.0.0_15006.downstream_cx_active", 3, "gauge"),
    ])
    assert text == (
        "# TYPE envoy_http_downstream_rq counter\n"
        'envoy_http_downstream_rq{response_code_class="2xx",http_conn_manager_prefix="inbound_0.0.0.0_8080"} 7\n'
        'envoy_http_downstream_rq{response_code_class="4xx",http_conn_manager_prefix="inbound_0.0.0.0_8080"} 1\n'
        'envoy_http_downstream_rq{response_code_class="2xx",http_conn_manager_prefix="outbound_0.0.0.0_8080"} 5\n'
        "\n"
        "# TYPE envoy_listener_downstream_cx_overflow counter\n"
        'envoy_listener_downstream_cx_overflow{listener_address="0.0.0.0_15006"} 2\n'
        "\n"
        "# TYPE envoy_listener_downstream_cx_active gauge\n"
        'envoy_listener_downstream_cx_active{listener_address="0.0.0.0_15006"} 3\n'
        "\n"
        "# TYPE envoy_server_live gauge\n"
        "envoy_server_live{} 1\n"
        "\n"
    )
    with pytest.raises(ValueError, match=r"'x\.y': kind 'timer'"):
        prometheus_text([("x.y", 1, "timer")])
