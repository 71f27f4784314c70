"""istiod's Gateway API translation: generated VirtualServices, precedence, weights, status reasons."""

from __future__ import annotations

from typing import Any

import pytest

from meshkit.resources.gatewayapi.translate import builtin_gateway_classes, sort_routes, translate

G = "gateway.networking.k8s.io"
SERVICES = {
    ("tutorial", n): (8080,)
    for n in ("customer", "preference", "recommendation", "recommendation-v1", "recommendation-v2")
}
SERVICES[("other", "recommendation")] = (8080,)
MESH_PARENT = {"group": "", "kind": "Service", "name": "recommendation", "port": 8080}


def route(name: str, rules: list[dict[str, Any]], parents: list[dict[str, Any]] | None = None, ns: str = "tutorial",
          kind: str = "HTTPRoute", ts: str = "2026-01-01T00:00:00Z", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{G}/v1", "kind": kind,
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": ts, "generation": 1},
            "spec": {"parentRefs": parents if parents is not None else [MESH_PARENT], "rules": rules, **spec}}


def gateway(name: str = "gw", listeners: list[dict[str, Any]] | None = None, ns: str = "tutorial") -> dict[str, Any]:
    return {"apiVersion": f"{G}/v1", "kind": "Gateway", "metadata": {"name": name, "namespace": ns, "generation": 1},
            "spec": {"gatewayClassName": "istio",
                     "listeners": listeners or [{"name": "http", "port": 80, "protocol": "HTTP"}]}}


def backend(name: str = "recommendation-v1", **kw: Any) -> dict[str, Any]:
    return {"name": name, "port": 8080, **kw}


def conditions(out: Any, name: str, kind: str = "HTTPRoute", ns: str = "tutorial") -> list[dict[str, Any]]:
    return [c for p in out.statuses[(kind, ns, name)]["parents"] for c in p["conditions"]]


def only_vs(resources: list[dict[str, Any]]) -> dict[str, Any]:
    out = translate(resources, SERVICES)
    assert len(out.virtual_services) == 1
    return out.virtual_services[0]


def test_mesh_parent_generates_the_merged_virtual_service_istio_names() -> None:
    vs = only_vs([route("recommendation", [{"backendRefs": [backend()]}])])
    assert vs["metadata"]["name"] == "tutorial~8080~recommendation.tutorial.svc.cluster.local"
    assert vs["metadata"]["annotations"]["internal.istio.io/route-semantics"] == "gateway"
    assert vs["spec"]["hosts"] == ["recommendation.tutorial.svc.cluster.local"]
    assert vs["spec"]["gateways"] == ["mesh"]
    http = vs["spec"]["http"][0]
    assert http["name"] == "tutorial.recommendation.0"
    assert http["match"] == [{"uri": {"prefix": "/"}, "port": 8080}]  # the port is added to every match
    assert http["route"] == [{"destination": {"host": "recommendation-v1.tutorial.svc.cluster.local",
                                              "port": {"number": 8080}}, "weight": 0}]


def test_rule_name_overrides_the_generated_name_and_each_match_is_one_route() -> None:
    rules = [{"name": "canary", "matches": [{"path": {"type": "Exact", "value": "/a"}},
                                             {"path": {"type": "Exact", "value": "/b"}}],
              "backendRefs": [backend()]}]
    http = only_vs([route("r", rules)])["spec"]["http"]
    assert [h["name"] for h in http] == ["canary", "canary"]
    assert [h["match"][0]["uri"] for h in http] == [{"exact": "/a"}, {"exact": "/b"}]


def _order(rules: list[dict[str, Any]]) -> list[str]:
    for i, r in enumerate(rules):
        r.setdefault("backendRefs", [backend()])
        r["name"] = f"r{i}"
    return [h["name"] for h in only_vs([route("r", rules)])["spec"]["http"]]


def m(path: str | None = None, kind: str = "PathPrefix", **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = dict(kw)
    if path is not None:
        out["path"] = {"type": kind, "value": path}
    return out


@pytest.mark.parametrize(
    ("rules", "first"),
    [
        # Exact beats any PathPrefix
        ([{"matches": [m("/a/b/c/d")]}, {"matches": [m("/a", "Exact")]}], "r1"),
        # the longer PathPrefix wins
        ([{"matches": [m("/a")]}, {"matches": [m("/a/b")]}], "r1"),
        # any PathPrefix beats a RegularExpression, whatever its length (Istio's choice)
        ([{"matches": [m("/a/.*/very/long", "RegularExpression")]}, {"matches": [m("/a")]}], "r1"),
        # a method match beats none
        ([{"matches": [m("/a")]}, {"matches": [m("/a", method="GET")]}], "r1"),
        # more header matches win
        ([{"matches": [m("/a", headers=[{"name": "x", "value": "1"}])]},
          {"matches": [m("/a", headers=[{"name": "x", "value": "1"}, {"name": "y", "value": "2"}])]}], "r1"),
        # more query param matches win
        ([{"matches": [m("/a")]}, {"matches": [m("/a", queryParams=[{"name": "q", "value": "1"}])]}], "r1"),
        # ties keep the rule order
        ([{"matches": [m("/a")]}, {"matches": [m("/a")]}], "r0"),
        # a rule without matches is PathPrefix "/" (CRD default): below longer prefixes, above any regex
        ([{"matches": [m("/.*", "RegularExpression")]}, {}], "r1"),
        ([{}, {"matches": [m("/a")]}], "r1"),
    ],
)
def test_precedence(rules: list[dict[str, Any]], first: str) -> None:
    assert _order(rules)[0] == first


def test_routes_of_two_httproutes_merge_and_the_older_wins_a_tie() -> None:
    newer = route("aaa", [{"name": "new", "backendRefs": [backend("recommendation-v2")]}], ts="2026-01-01T00:00:05Z")
    older = route("zzz", [{"name": "old", "backendRefs": [backend()]}], ts="2026-01-01T00:00:01Z")
    vs = only_vs([newer, older])
    assert [h["name"] for h in vs["spec"]["http"]] == ["old", "new"]
    assert vs["metadata"]["annotations"]["internal.istio.io/parents"] == "HTTPRoute/zzz.tutorial,HTTPRoute/aaa.tutorial"
    same_second = [route("bbb", [{"name": "b", "backendRefs": [backend()]}]),
                   route("aaa", [{"name": "a", "backendRefs": [backend()]}])]
    assert [h["name"] for h in only_vs(same_second)["spec"]["http"]] == ["a", "b"]  # then by name


def test_sort_is_stable_and_puts_matchless_routes_last() -> None:
    routes = [{"name": "none"}, {"name": "p", "match": [{"uri": {"prefix": "/"}}]}]
    assert [r["name"] for r in sort_routes(routes)] == ["p", "none"]


def test_weights_relative_default_one_zero_dropped_all_zero_500() -> None:
    def http(refs: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(only_vs([route("r", [{"backendRefs": refs}])])["spec"]["http"][0])

    two = http([backend(weight=90), backend("recommendation-v2", weight=10)])
    assert [d["weight"] for d in two["route"]] == [90, 10]
    defaults = http([backend(), backend("recommendation-v2")])
    assert [d["weight"] for d in defaults["route"]] == [1, 1]
    dropped = http([backend(weight=0), backend("recommendation-v2", weight=3)])
    assert [d["destination"]["host"] for d in dropped["route"]] == ["recommendation-v2.tutorial.svc.cluster.local"]
    zero = http([backend(weight=0), backend("recommendation-v2", weight=0)])
    assert zero["directResponse"] == {"status": 500} and "route" not in zero


def test_filters_translate_as_istio_does() -> None:
    rules = [{
        "matches": [m("/api/")],
        "filters": [
            {"type": "RequestHeaderModifier", "requestHeaderModifier": {
                "set": [{"name": "X-A", "value": "1"}, {"name": "x-a", "value": "2"}], "remove": ["x-b"]}},
            {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [{"name": "X-R", "value": "y"}]}},
            {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"},
                                                   "hostname": "backend.example"}},
            {"type": "RequestMirror", "requestMirror": {"backendRef": backend("recommendation-v2"),
                                                         "fraction": {"numerator": 1, "denominator": 4}}},
            {"type": "CORS", "cors": {"allowOrigins": ["https://*.example.com", "http://a.b"], "maxAge": 30}},
        ],
        "backendRefs": [backend()],
    }]
    http = only_vs([route("r", rules)])["spec"]["http"][0]
    assert http["match"][0]["uri"] == {"prefix": "/api"}  # trailing "/" trimmed
    assert http["headers"]["request"] == {"set": {"x-a": "1"}, "remove": ["x-b"]}  # lowercased, first wins
    assert http["headers"]["response"] == {"add": {"x-r": "y"}}
    assert http["rewrite"] == {"uri": "/", "authority": "backend.example"}
    assert http["mirrors"][0]["percentage"] == {"value": 25.0}
    assert http["corsPolicy"]["allowOrigins"] == [{"prefix": "https://"}, {"exact": "http://a.b"}] or \
        http["corsPolicy"]["allowOrigins"][1] == {"exact": "http://a.b"}
    assert http["corsPolicy"]["maxAge"] == "30s"


def test_redirect_and_full_path_rewrite() -> None:
    redirect = [{"filters": [{"type": "RequestRedirect", "requestRedirect": {
        "scheme": "https", "hostname": "x.example", "path": {"type": "ReplaceFullPath", "replaceFullPath": "/new"}}}]}]
    http = only_vs([route("r", redirect)])["spec"]["http"][0]
    assert http["redirect"] == {"redirectCode": 302, "authority": "x.example", "scheme": "https",
                                "derivePort": "FROM_PROTOCOL_DEFAULT", "uri": "/new"}
    assert "route" not in http and "directResponse" not in http  # a redirect with no backend is no 500
    rewrite = [{"filters": [{"type": "URLRewrite", "urlRewrite": {
        "path": {"type": "ReplaceFullPath", "replaceFullPath": "/x"}}}], "backendRefs": [backend()]}]
    http = only_vs([route("r", rewrite)])["spec"]["http"][0]
    assert http["rewrite"] == {"uriRegexRewrite": {"match": "/.*", "rewrite": "/x"}}


def test_timeouts_and_retry() -> None:
    http = only_vs([route("r", [{"timeouts": {"request": "2s", "backendRequest": "500ms"},
                                 "backendRefs": [backend()]}])])["spec"]["http"][0]
    assert http["timeout"] == "500ms"  # backendRequest is the route timeout without a retry block
    http = only_vs([route("r", [{"timeouts": {"request": "2s", "backendRequest": "500ms"},
                                 "retry": {"codes": [503], "backoff": "10ms"},
                                 "backendRefs": [backend()]}])])["spec"]["http"][0]
    assert http["timeout"] == "2s"
    assert http["retries"] == {"attempts": 2, "perTryTimeout": "500ms", "backoff": "10ms",
                               "retryOn": "connect-failure,refused-stream,unavailable,cancelled,503"}
    http = only_vs([route("r", [{"timeouts": {"request": "0s"}, "retry": {"attempts": 0},
                                 "backendRefs": [backend()]}])])["spec"]["http"][0]
    assert "timeout" not in http and http["retries"] == {"attempts": 0, "retryOn": ""}


def status_of(resources: list[dict[str, Any]], name: str = "r") -> dict[str, tuple[str, str, str]]:
    out = translate(resources, SERVICES)
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in conditions(out, name)}


def test_status_accepted_and_resolved() -> None:
    st = status_of([route("r", [{"backendRefs": [backend()]}])])
    assert st == {"Accepted": ("True", "Accepted", "Route was valid"),
                  "ResolvedRefs": ("True", "ResolvedRefs", "All references resolved")}


def test_status_backend_not_found_keeps_the_route_pointing_at_a_missing_cluster() -> None:
    resources = [route("r", [{"backendRefs": [backend("nope"), backend()]}])]
    assert status_of(resources)["ResolvedRefs"] == (
        "False", "BackendNotFound", "backend(nope.tutorial.svc.cluster.local) not found")
    hosts = [d["destination"]["host"] for d in only_vs(resources)["spec"]["http"][0]["route"]]
    assert hosts == ["nope.tutorial.svc.cluster.local", "recommendation-v1.tutorial.svc.cluster.local"]


def test_status_no_matching_parent_service() -> None:
    parents = [{"group": "", "kind": "Service", "name": "ghost", "port": 8080}]
    out = translate([route("r", [{"backendRefs": [backend()]}], parents)], SERVICES)
    st = {c["type"]: (c["status"], c["reason"], c["message"]) for c in conditions(out, "r")}
    assert st["Accepted"] == ("False", "NoMatchingParent", 'parent service: "ghost" not found')
    assert out.virtual_services == []


def test_status_invalid_filter_drops_every_route_of_the_httproute() -> None:
    rules = [{"backendRefs": [backend()]},
             {"matches": [m("/x")], "filters": [{"type": "ExtensionRef", "extensionRef": {
                 "group": "example.io", "kind": "Thing", "name": "t"}}], "backendRefs": [backend()]}]
    out = translate([route("r", rules)], SERVICES)
    assert out.virtual_services == []
    st = {c["type"]: (c["status"], c["reason"], c["message"]) for c in conditions(out, "r")}
    assert st["Accepted"][0] == "True"
    assert st["ResolvedRefs"] == ("False", "InvalidFilter", 'unsupported filter type "ExtensionRef"')


def test_status_invalid_header_value_is_an_invalid_filter() -> None:
    rules = [{"filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {
        "set": [{"name": "x", "value": "a\x01b"}]}}], "backendRefs": [backend()]}]
    assert status_of([route("r", rules)])["ResolvedRefs"] == (
        "False", "InvalidFilter", 'header "x" value contains invalid characters')


def test_status_invalid_kind_and_invalid_destination() -> None:
    kind = [route("r", [{"backendRefs": [{"group": "example.io", "kind": "Bucket", "name": "b", "port": 1}]}])]
    assert status_of(kind)["ResolvedRefs"] == (
        "False", "InvalidKind", 'referencing unsupported backendRef: group "example.io" kind "Bucket"')
    dotted = [route("r", [{"backendRefs": [backend("recommendation.tutorial.svc.cluster.local")]}])]
    assert status_of(dotted)["ResolvedRefs"] == (
        "False", "InvalidDestination", "service name invalid; the name of the Service must be used, not the hostname.")


GW_PARENT = {"name": "gw"}


def test_gateway_parent_generates_istio_gateway_and_per_host_virtual_service() -> None:
    out = translate([gateway(), route("r", [{"backendRefs": [backend("customer")]}], [GW_PARENT],
                                      hostnames=["shop.example"])], SERVICES)
    assert [g["metadata"]["name"] for g in out.gateways] == ["gw~istio-autogenerated-k8s-gateway~http"]
    assert out.gateways[0]["spec"]["servers"][0]["hosts"] == ["tutorial/*"]
    assert out.gateways[0]["spec"]["selector"] == {"gateway.networking.k8s.io/gateway-name": "gw"}
    vs = out.virtual_services[0]
    assert vs["metadata"]["name"] == "tutorial~gw~istio-autogenerated-k8s-gateway~http~shop.example"
    assert vs["spec"]["gateways"] == ["tutorial/gw~istio-autogenerated-k8s-gateway~http"]
    assert [d.name for d in out.deployments] == ["gw-istio"]
    gw_status = out.statuses[("Gateway", "tutorial", "gw")]
    assert gw_status["listeners"][0]["attachedRoutes"] == 1
    assert [c["type"] for c in gw_status["listeners"][0]["conditions"]] == [
        "Accepted", "Conflicted", "Programmed", "ResolvedRefs"]


def test_gateway_status_programmed_once_its_deployment_is_ready() -> None:
    waiting = translate([gateway()], SERVICES).statuses[("Gateway", "tutorial", "gw")]
    assert [(c["type"], c["status"]) for c in waiting["conditions"]] == [
        ("Accepted", "True"), ("Programmed", "False"), ("ResolvedRefs", "True")]
    assert "addresses" not in waiting
    ready = translate([gateway()], SERVICES, ["tutorial/gw-istio"]).statuses[("Gateway", "tutorial", "gw")]
    assert ready["conditions"][1]["message"] == (
        "Resource programmed, assigned to service(s) gw-istio.tutorial.svc.cluster.local:80")
    assert ready["addresses"] == [{"type": "IPAddress", "value": "127.0.0.1"}]


def test_status_not_allowed_by_listeners_other_namespace() -> None:
    out = translate([gateway(), route("r", [{"backendRefs": [backend("recommendation")]}],
                                      [{"name": "gw", "namespace": "tutorial"}], ns="other")], SERVICES)
    st = {c["type"]: (c["status"], c["reason"], c["message"]) for c in conditions(out, "r", ns="other")}
    message = 'hostnames matched parent hostname "*", but namespace "other" is not allowed by the parent'
    assert st["Accepted"] == ("False", "NotAllowedByListeners", message)


def test_status_no_matching_listener_hostname_section_and_port() -> None:
    listeners = [{"name": "web", "port": 80, "protocol": "HTTP", "hostname": "*.domain.example"}]
    out = translate([gateway(listeners=listeners), route("r", [{"backendRefs": [backend()]}], [GW_PARENT],
                                                         hostnames=["other.example"])], SERVICES)
    assert conditions(out, "r")[0]["reason"] == "NoMatchingListenerHostname"
    assert conditions(out, "r")[0]["message"] == 'no hostnames matched parent hostname "*.domain.example"'
    out = translate([gateway(), route("r", [{"backendRefs": [backend()]}], [{"name": "gw", "sectionName": "fake"}])],
                    SERVICES)
    assert conditions(out, "r")[0]["message"] == 'sectionName "fake" not found'
    out = translate([gateway(), route("r", [{"backendRefs": [backend()]}], [{"name": "gw", "port": 1234}])], SERVICES)
    assert (conditions(out, "r")[0]["reason"], conditions(out, "r")[0]["message"]) == (
        "NoMatchingParent", "port 1234 not found")


def test_status_ref_not_permitted_at_gateways_until_a_reference_grant() -> None:
    cross = route("r", [{"backendRefs": [backend("recommendation", namespace="other")]}], [GW_PARENT])
    st = {c["type"]: (c["status"], c["reason"], c["message"])
          for c in conditions(translate([gateway(), cross], SERVICES), "r")}
    assert st["ResolvedRefs"] == ("False", "RefNotPermitted", 'backendRef recommendation/other not accessible to a '
                                  'HTTPRoute in namespace "tutorial" (missing a ReferenceGrant?)')
    grant = {"apiVersion": f"{G}/v1beta1", "kind": "ReferenceGrant", "metadata": {"name": "g", "namespace": "other"},
             "spec": {"from": [{"group": G, "kind": "HTTPRoute", "namespace": "tutorial"}],
                      "to": [{"group": "", "kind": "Service"}]}}
    st = {c["type"]: c["status"] for c in conditions(translate([gateway(), cross, grant], SERVICES), "r")}
    assert st["ResolvedRefs"] == "True"
    # the mesh (GAMMA) does not enforce ReferenceGrants
    mesh = route("m", [{"backendRefs": [backend("recommendation", namespace="other")]}])
    assert {c["type"]: c["status"] for c in conditions(translate([mesh], SERVICES), "m")}["ResolvedRefs"] == "True"


def test_builtin_gateway_classes_are_accepted() -> None:
    out = translate(builtin_gateway_classes(), SERVICES)
    assert out.statuses[("GatewayClass", "tutorial", "istio")]["conditions"][0]["message"] == (
        "Handled by Istio controller")
    assert {gc["metadata"]["name"] for gc in builtin_gateway_classes()} == {"istio", "istio-waypoint"}


def test_grpc_route_method_matches() -> None:
    matches = [{"method": {"service": "pkg.Svc", "method": "Get"}}, {"method": {"service": "pkg.Svc"}}]
    grpc = route("g", [{"matches": matches, "backendRefs": [backend()]}], kind="GRPCRoute")
    uris = [h["match"][0]["uri"] for h in only_vs([grpc])["spec"]["http"]]
    assert uris == [{"exact": "/pkg.Svc/Get"}, {"prefix": "/pkg.Svc/"}]


def test_analyze_reports_negative_conditions_and_the_virtual_service_clash() -> None:
    from meshkit.resources import analyze

    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "recommendation", "namespace": "tutorial"},
           "spec": {"ports": [{"name": "http", "port": 8080}], "selector": {"app": "recommendation"}}}
    vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
          "metadata": {"name": "recommendation", "namespace": "tutorial", "creationTimestamp": "2026-01-01T00:00:09Z"},
          "spec": {"hosts": ["recommendation"], "http": [{"route": [{"destination": {"host": "recommendation"}}]}]}}
    rt = route("recommendation", [{"backendRefs": [backend("recommendation-v9")]}], ts="2026-01-01T00:00:01Z")
    lines = [p.analyze_line() for p in analyze([svc, vs, rt])]
    assert ("Warning [IST0171] (HTTPRoute tutorial/recommendation) A condition with a negative status is present: "
            "type=ResolvedRefs, reason=BackendNotFound, message=backend(recommendation-v9.tutorial.svc.cluster.local)"
            " not found.") in lines
    clash = [line for line in lines if "IST0109" in line]
    assert len(clash) == 2 and all("Sidecars do not merge them: HTTPRoute tutorial/recommendation applies" in c
                                   for c in clash)
    # a status read from the mesh is reported as is
    given = {**rt, "status": {"parents": [{"parentRef": MESH_PARENT, "conditions": [
        {"type": "ResolvedRefs", "status": "False", "reason": "InvalidFilter", "message": "m"}]}]}}
    assert any("reason=InvalidFilter, message=m." in p.message for p in analyze([svc, given]))
