"""The waypoint's rules without a mesh: binding labels and traffic types, the VirtualServices it takes
(sourceLabels entries dropped), istioctl's Gateway and tables."""

from __future__ import annotations

import pytest

from meshkit.backends.local.waypoint.binding import (
    MISSING_LABEL,
    Waypoint,
    bind_service,
    bind_workload,
    waypoints,
    with_resolved_waypoints,
)
from meshkit.backends.local.waypoint.proxy import waypoint_resources
from meshkit.errors import MeshkitError
from meshkit.waypointctl import list_table, status_table, tabwriter, waypoint_gateway

WPS = {"tutorial/waypoint": Waypoint("waypoint", "tutorial", "service", True),
       "tutorial/wl": Waypoint("wl", "tutorial", "workload", True),
       "tutorial/both": Waypoint("both", "tutorial", "all", True),
       "tutorial/down": Waypoint("down", "tutorial", "service", False),
       "other/shared": Waypoint("shared", "other", "service", True)}
USE = "istio.io/use-waypoint"


def test_a_services_own_label_wins_and_none_opts_out_of_the_namespace_waypoint() -> None:
    ns = {USE: "waypoint"}
    assert bind_service({}, "tutorial", ns, WPS).waypoint == WPS["tutorial/waypoint"]
    assert bind_service({USE: "both"}, "tutorial", ns, WPS).waypoint == WPS["tutorial/both"]
    assert bind_service({USE: "none"}, "tutorial", ns, WPS).waypoint is None
    assert bind_service({}, "tutorial", {}, WPS).waypoint is None
    other = bind_service({USE: "shared", "istio.io/use-waypoint-namespace": "other"}, "tutorial", {}, WPS)
    assert other.waypoint == WPS["other/shared"]


def test_traffic_types_decide_what_binds() -> None:
    refused = bind_service({USE: "wl"}, "tutorial", {}, WPS)
    assert refused.waypoint is None and refused.reason == "UnsupportedTrafficType"
    assert refused.message == ('attempting to bind to traffic type "service" which the waypoint "tutorial/wl" '
                               "does not support")
    assert bind_workload({USE: "wl"}, "tutorial", {}, WPS).waypoint == WPS["tutorial/wl"]
    assert bind_workload({USE: "both"}, "tutorial", {}, WPS).waypoint == WPS["tutorial/both"]
    # a pod inheriting its namespace's service waypoint simply has none; labelled itself, it is an error
    assert bind_workload({}, "tutorial", {USE: "waypoint"}, WPS).reason == ""
    assert bind_workload({USE: "waypoint"}, "tutorial", {}, WPS).reason == "UnsupportedTrafficType"


def test_a_missing_or_unready_waypoint_leaves_the_service_unbound() -> None:
    assert bind_service({USE: "down"}, "tutorial", {}, WPS).message == 'waypoint "tutorial/down" is not ready'
    assert bind_service({USE: "nowhere"}, "tutorial", {}, WPS).reason == "WaypointIsNotReady"


def test_waypoints_come_from_gateways_of_class_istio_waypoint_with_their_traffic_type() -> None:
    gws = [{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "a", "namespace": "tutorial", "labels": {"istio.io/waypoint-for": "all"}},
            "spec": {"gatewayClassName": "istio-waypoint"}},
           {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "b", "namespace": "tutorial"}, "spec": {"gatewayClassName": "istio-waypoint"}},
           {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "c", "namespace": "tutorial"}, "spec": {"gatewayClassName": "istio"}}]
    found = waypoints(gws, ["tutorial/a"])
    assert found == {"tutorial/a": Waypoint("a", "tutorial", "all", True),
                     "tutorial/b": Waypoint("b", "tutorial", "service", False)}


def _vs(name: str, ns: str, hosts: list[str], http: list[dict]) -> dict:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": ns}, "spec": {"hosts": hosts, "http": http}}


def _to(subset: str) -> list[dict]:
    return [{"destination": {"host": "recommendation", "subset": subset}}]


def test_source_labels_entries_are_dropped_and_a_rule_left_without_entries_yields_no_route() -> None:
    vs = _vs("r", "tutorial", ["recommendation"], [
        {"match": [{"sourceLabels": {"app": "curl"}}], "route": _to("v2")},
        {"match": [{"sourceLabels": {"app": "curl"}}, {"headers": {"x": {"exact": "1"}}}], "route": _to("v3")},
        {"route": _to("v1")},
        {"route": _to("unreachable")}])
    (out,) = waypoint_resources([vs], "tutorial")
    http = out["spec"]["http"]
    assert [r["route"][0]["destination"]["subset"] for r in http] == ["v3", "v1"]
    assert http[0]["match"] == [{"headers": {"x": {"exact": "1"}}}]


def test_a_virtual_service_with_only_source_labels_rules_is_omitted() -> None:
    vs = _vs("r", "tutorial", ["recommendation"], [{"match": [{"sourceLabels": {"app": "a"}}], "route": _to("v2")}])
    assert waypoint_resources([vs], "tutorial") == []


def test_only_the_services_or_the_waypoints_namespace_and_same_host_routes_are_merged() -> None:
    first = _vs("a", "tutorial", ["recommendation"], [{"match": [{"uri": {"prefix": "/a"}}], "route": _to("v2")}])
    second = _vs("b", "tutorial", ["recommendation.tutorial.svc.cluster.local"], [{"route": _to("v1")}])
    foreign = _vs("c", "elsewhere", ["recommendation.tutorial.svc.cluster.local"], [{"route": _to("v3")}])
    out = waypoint_resources([first, second, foreign], "tutorial")
    assert len(out) == 1
    assert [r["route"][0]["destination"]["subset"] for r in out[0]["spec"]["http"]] == ["v2", "v1"]
    # the waypoint's own namespace may route any Service it serves
    assert len(waypoint_resources([foreign], "elsewhere")) == 1


def test_istioctl_gateway_and_tables() -> None:
    gw = waypoint_gateway("tutorial")
    assert gw["spec"] == {"gatewayClassName": "istio-waypoint",
                          "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}
    assert "labels" not in gw["metadata"]  # no --for: no waypoint-for label, istiod defaults to service
    assert waypoint_gateway("tutorial", "w", "workload")["metadata"]["labels"] == {"istio.io/waypoint-for": "workload"}
    with pytest.raises(MeshkitError, match="'none' is a reserved value"):
        waypoint_gateway("tutorial", "none")
    with pytest.raises(MeshkitError, match=r"Valid options are: \[all none service workload\]"):
        waypoint_gateway("tutorial", "w", "pods")
    assert list_table([]) == "No waypoints found.\n" == status_table([])
    programmed = {**gw, "status": {"conditions": [{"type": "Programmed", "status": "False",
                                                   "reason": "AddressNotAssigned", "message": "pending"}]}}
    other = {"metadata": {"name": "gw", "namespace": "tutorial"}, "spec": {"gatewayClassName": "istio"}}
    assert list_table([programmed, other]) == ("NAME         REVISION     TRAFFIC TYPE     PROGRAMMED\n"
                                               "waypoint     default      none             False\n")
    assert status_table([programmed]).splitlines()[1].split() == [
        "waypoint", "False", "Programmed", "AddressNotAssigned", "pending"]
    assert tabwriter([["A", "BB", "C"], ["aaa", "b", "c"]]) == "A       BB     C\naaa     b      c\n"


def test_routes_get_resolved_waypoints_with_istiods_messages() -> None:
    status = {"parents": [{"parentRef": {"group": "", "kind": "Service", "name": n}, "conditions": []}
                          for n in ("bound", "plain", "gone", "opted-out")]
              + [{"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"},
                  "conditions": []}]}
    services = {("tutorial", "bound"): {USE: "waypoint"}, ("tutorial", "plain"): {},
                ("tutorial", "opted-out"): {USE: "none"}}
    out = with_resolved_waypoints(status, "tutorial", 2, services, {"tutorial": {}})
    messages = [p["conditions"][-1]["message"] for p in out["parents"]]
    assert messages == ["All waypoints resolved", MISSING_LABEL, "parent not found", MISSING_LABEL,
                        "All waypoints resolved"]
    assert {p["conditions"][-1]["status"] for p in out["parents"]} == {"True"}
    # a namespace label resolves a Service without its own (even one labelled none, as istiod checks it)
    out = with_resolved_waypoints(status, "tutorial", 2, services, {"tutorial": {USE: "waypoint"}})
    assert [p["conditions"][-1]["message"] for p in out["parents"]][3] == "All waypoints resolved"
