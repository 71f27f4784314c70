"""cluster/: every manifest parses, the committed files equal the generators, the Istio ones validate."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from meshkit.backends.kind import manifests, versions

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
YAML_FILES = sorted(CLUSTER.rglob("*.yaml"))
ISTIOFILES = sorted((CLUSTER / "istiofiles").glob("*.yaml"))


def load(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(CLUSTER)))
def test_every_manifest_parses_into_kubernetes_shaped_documents(path: Path) -> None:
    docs = load(path)
    assert docs, f"{path} holds no document"
    for doc in docs:
        assert isinstance(doc, dict)
        if path.parent.name != "istio" or path.name == "istio-operator.yaml":  # helm values have no kind
            assert doc["kind"] and doc["apiVersion"]


def test_committed_cluster_files_equal_what_the_generators_render() -> None:
    rendered = manifests.cluster_files()
    for rel, text in rendered.items():
        committed = CLUSTER / rel
        assert committed.is_file(), f"missing {rel}: run python -m meshkit.backends.kind.manifests cluster"
        assert committed.read_text() == text, f"{rel} is stale: run python -m meshkit.backends.kind.manifests cluster"


@pytest.mark.parametrize("path", ISTIOFILES, ids=lambda p: p.name)
def test_istiofiles_pass_meshkit_validation(path: Path) -> None:
    from meshkit.resources import parse_text, validate_documents

    report = validate_documents(parse_text(path.read_text(), str(path)))
    assert [p.format() for p in report.errors] == []
    assert len(report.resources) == len(load(path))


@pytest.mark.parametrize("path", ISTIOFILES, ids=lambda p: p.name)
def test_istiofiles_follow_the_naming_and_current_api_versions(path: Path) -> None:
    kind_slug = {
        "VirtualService": "virtual-service",
        "DestinationRule": "destination-rule",
        "Gateway": "gateway",
        "ServiceEntry": "service-entry",
        "PeerAuthentication": "peer-authentication",
        "AuthorizationPolicy": "authorization-policy",
        "RequestAuthentication": "request-authentication",
        "HTTPRoute": "httproute",
        "Service": "service",
    }
    docs = load(path)
    assert path.name.startswith(kind_slug[docs[0]["kind"]] + "-")
    for doc in docs:
        assert doc["apiVersion"] in ("networking.istio.io/v1", "security.istio.io/v1", "gateway.networking.k8s.io/v1",
                                     "v1")
        assert doc["metadata"]["namespace"] == "tutorial"


def test_kind_config_publishes_the_gateway_nodeports_on_loopback_with_the_pinned_node() -> None:
    (doc,) = load(CLUSTER / "kind-config.yaml")
    (node,) = doc["nodes"]
    assert node["role"] == "control-plane"
    assert node["image"] == versions.NODE_IMAGE and "@sha256:" in node["image"]
    assert [(m["containerPort"], m["hostPort"], m["listenAddress"]) for m in node["extraPortMappings"]] == [
        (30080, 8080, "127.0.0.1"),
        (30443, 8443, "127.0.0.1"),
    ]
    custom = manifests.kind_config("lab", host_port=9080, https_host_port=9443)
    assert [m["hostPort"] for m in custom["nodes"][0]["extraPortMappings"]] == [9080, 9443]


def test_istio_operator_has_the_tutorial_mesh_settings_and_fixed_nodeports() -> None:
    (op,) = load(CLUSTER / "istio" / "istio-operator.yaml")
    spec = op["spec"]
    assert spec["profile"] == "demo"
    mesh = spec["meshConfig"]
    assert mesh["accessLogFile"] == "/dev/stdout" and mesh["enableTracing"] is True
    assert mesh["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY"}
    assert mesh["extensionProviders"] == [
        {
            "name": "jaeger",
            "opentelemetry": {"service": "jaeger-collector.istio-system.svc.cluster.local", "port": 4317},
        }
    ]
    assert spec["values"]["pilot"] == {"traceSampling": 100}
    (gw,) = spec["components"]["ingressGateways"]
    service = gw["k8s"]["service"]
    assert service["type"] == "NodePort"
    ports = {p["name"]: (p["port"], p.get("nodePort")) for p in service["ports"]}
    assert ports["http2"] == (80, 30080) and ports["https"] == (443, 30443)
    tutorial = manifests.istio_operator("tutorial")["spec"]["values"]["pilot"]["env"]
    assert tutorial["ENABLE_LEGACY_LB_ALGORITHM_DEFAULT"] == "true"
    with pytest.raises(ValueError, match="unknown profile"):
        manifests.istio_operator("1.0")


def test_helm_values_match_the_operator_config() -> None:
    (istiod,) = load(CLUSTER / "istio" / "helm-istiod-values.yaml")
    (gateway,) = load(CLUSTER / "istio" / "helm-gateway-values.yaml")
    (op,) = load(CLUSTER / "istio" / "istio-operator.yaml")
    assert istiod["meshConfig"] == op["spec"]["meshConfig"]
    assert {p["nodePort"] for p in gateway["service"]["ports"] if "nodePort" in p} == {30080, 30443}


def test_telemetry_namespace_and_addons() -> None:
    (tel,) = load(CLUSTER / "telemetry.yaml")
    assert tel["apiVersion"] == "telemetry.istio.io/v1" and tel["metadata"]["namespace"] == "istio-system"
    assert tel["spec"]["tracing"] == [{"providers": [{"name": "jaeger"}], "randomSamplingPercentage": 100.0}]
    (ns,) = load(CLUSTER / "namespace.yaml")
    assert ns["metadata"] == {"name": "tutorial", "labels": {"istio-injection": "enabled"}}
    urls = [line for line in (CLUSTER / "istio" / "addons.txt").read_text().splitlines() if not line.startswith("#")]
    assert urls == [
        f"https://raw.githubusercontent.com/istio/istio/{versions.ISTIO_VERSION}/samples/addons/{n}.yaml"
        for n in ("prometheus", "jaeger", "kiali")
    ]


def test_sample_manifests_have_labels_accounts_services_probes_and_no_latest_tag() -> None:
    docs = [doc for path in sorted((CLUSTER / "sample").glob("*.yaml")) for doc in load(path)]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {
        "customer",
        "preference-v1",
        "recommendation-v1",
        "recommendation-v2",
        "recommendation-v3",
    }
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"} == set(manifests.SERVICES)
    for svc in (d for d in docs if d["kind"] == "Service"):
        assert svc["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": 8080, "protocol": "TCP"}]
        assert svc["spec"]["selector"] == {"app": svc["metadata"]["name"]}
    for name, dep in deployments.items():
        pod = dep["spec"]["template"]
        labels = pod["metadata"]["labels"]
        assert labels == dep["spec"]["selector"]["matchLabels"] and set(labels) == {"app", "version"}
        assert pod["spec"]["serviceAccountName"] == labels["app"]
        (container,) = pod["spec"]["containers"]
        assert not container["image"].endswith(":latest") and ":" in container["image"]
        assert container["args"][:4] == ["--service", labels["app"], "--version", labels["version"]]
        assert "0.0.0.0" in container["args"], f"{name} must accept the sidecar's traffic on the pod IP"
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert container["resources"]["requests"]


def test_deploy_without_sidecar_opts_the_pod_out_of_injection() -> None:
    dep = manifests.deployment("recommendation", "v3", "meshkit-sample:abc", "alice", replicas=2, sidecar=False)
    assert dep["metadata"] == {
        "name": "recommendation-v3",
        "namespace": "alice",
        "labels": {"app": "recommendation", "version": "v3"},
    }
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["template"]["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"


def test_gateway_customer_is_the_tutorials_ingress_route() -> None:
    gw, vs = load(CLUSTER / "istiofiles" / "gateway-customer.yaml")
    assert gw["spec"]["selector"] == {"istio": "ingressgateway"}
    assert gw["spec"]["servers"][0]["port"]["number"] == 80
    (route,) = vs["spec"]["http"]
    assert route["match"] == [{"uri": {"prefix": "/customer"}}] and route["rewrite"] == {"uri": "/"}
    assert route["route"][0]["destination"] == {"host": "customer", "port": {"number": 8080}}


def test_dockerfile_builds_the_sample_as_non_root_on_python_311_slim() -> None:
    text = (CLUSTER / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    assert "COPY meshkit ./meshkit" in lines and "COPY pyproject.toml README.md ./" in lines
    assert any(line.startswith("RUN pip install . ") for line in lines)
    assert "USER 10001" in lines and "EXPOSE 8080" in lines
    assert 'ENTRYPOINT ["python", "-m", "meshkit.sample"]' in lines
    assert "/health/ready" in text and "latest" not in text
