"""The install plan: order, exact commands, and the ``--dry-run`` text (snapshot-checked)."""

from __future__ import annotations

from pathlib import Path

from meshkit.backends.kind import plan, versions
from meshkit.backends.kind.plan import PlanOptions, format_plan, install_plan

SNAPSHOTS = Path(__file__).parent / "snapshots"
HOME = Path("/home/learner/.meshkit/kind-meshkit")
IMAGE = "meshkit-sample:0123456789ab"


def index_of(steps: list[plan.Step], needle: str) -> int:
    return next(i for i, step in enumerate(steps) if needle in step.command() or needle in step.description)


def test_dry_run_text_matches_the_snapshot_for_istioctl() -> None:
    text = format_plan(install_plan(PlanOptions(home=HOME, image=IMAGE)))
    assert text + "\n" == (SNAPSHOTS / "dry_run_istioctl.txt").read_text()


def test_dry_run_text_matches_the_snapshot_for_helm_and_another_port() -> None:
    text = format_plan(install_plan(PlanOptions(home=HOME, image=IMAGE, installer="helm", host_port=9080)))
    assert text + "\n" == (SNAPSHOTS / "dry_run_helm.txt").read_text()
    assert "http://127.0.0.1:9080/customer" in text and "istioctl" not in text


def test_waits_come_in_istios_order() -> None:
    steps = install_plan(PlanOptions(home=HOME, image=IMAGE))
    order = [
        index_of(steps, needle)
        for needle in (
            plan.CHECK_PREREQS,
            "kind create cluster",
            "istioctl install",
            "crd/virtualservices.networking.istio.io",
            "deployment/istiod",
            plan.WAIT_WEBHOOK,
            "deployment/istio-ingressgateway",
            "samples/addons/prometheus.yaml",
            "deployment/prometheus",
            "namespace.yaml",
            "docker build",
            "kind load",
            "sample.yaml",
            "gateway-customer.yaml",
            "deployment --all",
            plan.WAIT_PODS,
            plan.WAIT_GATEWAY,
        )
    ]
    assert order == sorted(order)


def test_exact_commands_of_the_key_steps() -> None:
    steps = install_plan(PlanOptions(home=HOME, image=IMAGE))
    create = steps[index_of(steps, "kind create cluster")]
    assert create.argv == (
        "kind",
        "create",
        "cluster",
        "--name",
        "meshkit",
        "--image",
        versions.NODE_IMAGE,
        "--config",
        f"{HOME}/kind-config.yaml",
        "--wait",
        "120s",
    )
    assert create.skip_if == ("kind", "get", "kubeconfig", "--name", "meshkit")
    build = steps[index_of(steps, "docker build")]
    assert build.argv == (
        "docker",
        "build",
        "-t",
        IMAGE,
        "-f",
        f"{HOME}/image-context/Dockerfile",
        f"{HOME}/image-context",
    )
    assert build.skip_if[:3] == ("docker", "image", "inspect")
    assert steps[index_of(steps, "kind load")].argv == (
        "kind",
        "load",
        "docker-image",
        IMAGE,
        "--name",
        "meshkit",
    )
    addons = steps[index_of(steps, "samples/addons/prometheus.yaml")]
    assert addons.retries == 2 and all(
        arg.startswith(f"https://raw.githubusercontent.com/istio/istio/{versions.ISTIO_VERSION}/")
        for arg in addons.argv
        if arg.startswith("https://")
    )
    for step in steps:
        if step.argv and step.argv[0] == "kubectl":
            assert step.argv[1:3] == ("--context", "kind-meshkit"), step.command()
        assert "latest" not in step.command()


def test_grafana_is_optional() -> None:
    with_grafana = install_plan(PlanOptions(home=HOME, image=IMAGE, grafana=True))
    assert "deployment/grafana" in format_plan(with_grafana)
    assert "grafana" not in format_plan(install_plan(PlanOptions(home=HOME, image=IMAGE)))


def test_down_deletes_only_meshkits_cluster() -> None:
    (step,) = plan.down_plan(PlanOptions(home=HOME, cluster_name="lab"))
    assert step.argv == ("kind", "delete", "cluster", "--name", "lab")


def test_ambient_with_istioctl_installs_the_ambient_profile_and_enrolls_the_namespace() -> None:
    steps = install_plan(PlanOptions(home=HOME, image=IMAGE, dataplane="ambient"))
    install = steps[index_of(steps, "istioctl install")]
    assert install.argv == ("istioctl", "install", "-y", "-f", f"{HOME}/istio-operator.yaml",
                            "--set", "profile=ambient", "--context", "kind-meshkit")
    assert "ambient profile: istiod, istio-cni, ztunnel" in install.description
    for ds in ("istio-cni-node", "ztunnel"):
        wait = steps[index_of(steps, f"daemonset/{ds}")]
        assert wait.argv == ("kubectl", "--context", "kind-meshkit", "-n", "istio-system", "rollout", "status",
                             f"daemonset/{ds}", "--timeout=300s")
    text = format_plan(steps, "meshkit up --backend kind --dataplane ambient")
    assert text.startswith("meshkit up --backend kind --dataplane ambient: 25 steps")
    assert "create namespace tutorial with istio.io/dataplane-mode=ambient" in text
    assert "istio-injection" not in text and "2/2" not in text
    order = [index_of(steps, n) for n in (
        "gateway-api/releases", "istioctl install", "deployment/istiod", "daemonset/istio-cni-node",
        "daemonset/ztunnel", plan.WAIT_WEBHOOK, "namespace.yaml", "sample.yaml", plan.WAIT_AMBIENT_PODS,
        plan.WAIT_GATEWAY)]
    assert order == sorted(order)  # the Gateway API CRDs first (waypoints are Gateways), the pods enrolled last
    assert plan.WAIT_PODS not in text
    # the sidecar plan is untouched by the option's existence
    assert "profile=ambient" not in format_plan(install_plan(PlanOptions(home=HOME, image=IMAGE)))


def test_ambient_with_helm_adds_the_cni_and_ztunnel_charts_in_istios_order() -> None:
    steps = install_plan(PlanOptions(home=HOME, image=IMAGE, installer="helm", dataplane="ambient"))
    helm = [s.argv for s in steps if s.argv[:1] == ("helm",) and "--install" in s.argv]
    releases = [argv[argv.index("--install") + 1] for argv in helm]
    assert releases == ["istio-base", "istiod", "istio-cni", "ztunnel", "istio-ingressgateway"]
    by_release = dict(zip(releases, helm, strict=True))
    for release in ("istiod", "istio-cni"):
        assert by_release[release][-2:] == ("--set", "profile=ambient")
    assert by_release["ztunnel"][by_release["ztunnel"].index("--install") + 2] == "istio/ztunnel"
    assert "profile=ambient" not in " ".join(by_release["istio-base"] + by_release["istio-ingressgateway"])
