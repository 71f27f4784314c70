"""No poisoned proxies, and config that is stored before it is live.

One mesh for the module. A RequestAuthentication without keys behaves as Istio offline (tokens
refused, the rest passes) and leaves every proxy SYNCED for the next change; a resource a proxy
cannot use (put in the store behind the API's back) is rejected alone, with its reason in
``meshkit status``, while the proxy keeps the rest and the resource's last good version; an apply
that cannot be written to disk is not applied.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import meshkit
from meshkit.backends.local.backend import LocalBackend
from meshkit.backends.local.processes import ProcessRecord
from meshkit.cli import main
from meshkit.errors import MeshkitError
from meshkit.mesh import Mesh

ISTIOFILES = Path(__file__).resolve().parents[2] / "cluster" / "istiofiles"
ALL_V2 = [ISTIOFILES / "destination-rule-recommendation-v1-v2.yaml",
          ISTIOFILES / "virtual-service-recommendation-v2.yaml"]
KEYLESS = """\
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: customer-keyless, namespace: tutorial}
spec:
  selector: {matchLabels: {app: customer}}
  jwtRules:
  - issuer: testing@secure.istio.io
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = meshkit.up(home=str(tmp_path_factory.mktemp("safety")))
    yield m
    m.backend.down()  # type: ignore[attr-defined]


def _backend(mesh: Mesh) -> LocalBackend:
    assert isinstance(mesh.backend, LocalBackend)
    return mesh.backend


def _token_without_kid(home: Path, issuer: str) -> str:
    """A well-formed RS256 token whose header names no key (so Envoy tries every key it has)."""
    key = serialization.load_pem_private_key((home / "jwt" / "jwt-key.pem").read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"iss": issuer, "sub": "alice", "exp": int(time.time()) + 600}).encode())
    sig = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{b64(sig)}"


def test_keyless_request_authentication_refuses_tokens_and_leaves_no_proxy_stale(
        mesh: Mesh, capsys: pytest.CaptureFixture[str]) -> None:
    backend = _backend(mesh)
    mesh.apply(KEYLESS)
    assert any("OpenID discovery" in w and "401" in w for w in mesh.warnings), mesh.warnings
    assert mesh.curl()[0] == 200  # no token: RequestAuthentication lets it through
    # istiod's stand-in key set names one kid, "abc": a token naming another kid matches no key ...
    token = mesh.token(subject="alice")
    assert mesh.curl(headers={"authorization": f"Bearer {token}"}) == (
        401, "Jwks doesn't have key to match kid or alg from Jwt")
    # ... and one naming none is checked against it and fails
    no_kid = _token_without_kid(backend.home, "testing@secure.istio.io")
    assert mesh.curl(headers={"authorization": f"Bearer {no_kid}"}) == (401, "Jwt verification fails")

    started = time.monotonic()
    mesh.apply(*ALL_V2)
    result = mesh.load(n=40, concurrency=4, flags=False)
    took = time.monotonic() - started
    with capsys.disabled():
        print(f"keyless RequestAuthentication, then all to v2: {result.summary()['versions']} after {took:.2f}s")
    # the causes, not a wall-clock bet (40 requests alone took over 2 s with both cores saturated): every
    # request went where the new rule sends them, so no proxy kept the old routes, and each proxy says so
    assert result.summary()["versions"] == {"v2": 40}
    pods = mesh.pods()
    assert all(p.synced and not p.extra["last_error"] for p in pods)
    assert main(["--home", str(backend.home), "status"]) == 0
    assert "STALE" not in capsys.readouterr().out
    assert main(["--home", str(backend.home), "analyze"]) == 0
    assert "OpenID discovery" in capsys.readouterr().out


def test_a_proxy_rejects_only_what_it_cannot_use_and_keeps_its_last_good_version(
        mesh: Mesh, capsys: pytest.CaptureFixture[str]) -> None:
    """A VirtualService in the store that no proxy can compile (a weight that is not a number),
    put there behind the API's back while the control plane was stopped."""
    backend = _backend(mesh)
    mesh.apply(*ALL_V2)
    state = json.loads((backend.home / "state.json").read_text())
    cp = ProcessRecord.of(int(state["pid"]))
    assert cp is not None
    os.kill(cp.pid, signal.SIGTERM)  # the pods keep serving
    while cp.alive():
        time.sleep(0.02)
    store = backend.home / "resources.json"
    items = json.loads(store.read_text())
    for res in items:
        if res["kind"] == "VirtualService" and res["metadata"]["name"] == "recommendation":
            res["spec"]["http"] = [{"route": [{"destination": {"host": "recommendation", "subset": "version-v1"},
                                               "weight": "most"}]}]
    items.append({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                  "metadata": {"name": "preference-timeout", "namespace": "tutorial"},
                  "spec": {"hosts": ["preference"], "http": [{"route": [{"destination": {"host": "preference"}}],
                                                               "timeout": "5s"}]}})
    store.write_text(json.dumps(items))
    backend.up()
    pods = mesh.pods()
    rejecting = [p for p in pods if p.extra["last_error"]]
    assert rejecting and all("VirtualService tutorial/recommendation rejected" in p.extra["last_error"]
                             for p in rejecting)
    assert all(p.synced for p in pods)  # the rest of the push was taken
    # the last good version (all to v2) stays in force, and the other VirtualService is live
    assert mesh.load(n=20, concurrency=4, flags=False).summary()["versions"] == {"v2": 20}
    customer = next(p for p in pods if p.app == "customer")
    dump = json.loads(_admin(mesh, customer.extra["ports"]["admin"], "/config_dump"))
    clusters = next(c for c in dump["configs"] if c["@type"].endswith(".ClustersConfigDump"))
    assert int(clusters["version_info"]) == backend.status()["version"]
    assert main(["--home", str(backend.home), "status"]) == 0
    out = capsys.readouterr().out
    assert "config rejected: VirtualService tutorial/recommendation rejected" in out and "STALE" not in out
    # a good version of the resource clears the error
    mesh.apply(ISTIOFILES / "virtual-service-recommendation-v1.yaml")
    deadline = time.monotonic() + 5
    while any(p.extra["last_error"] for p in mesh.pods()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(p.extra["last_error"] for p in mesh.pods())
    assert mesh.load(n=10, concurrency=2, flags=False).summary()["versions"] == {"v1": 10}
    mesh.reset()


def _admin(mesh: Mesh, port: int, path: str) -> str:
    """A pod's admin port, which answers the mesh's owner only (the credential in MESHKIT_HOME)."""
    import urllib.request

    with urllib.request.urlopen(_backend(mesh)._owner_request(port, path), timeout=5) as resp:
        return str(resp.read().decode())


def test_an_apply_that_cannot_be_stored_is_not_applied(mesh: Mesh) -> None:
    """A full disk, for real: the store's temporary file is made to point at /dev/full (ENOSPC)."""
    backend = _backend(mesh)
    mesh.reset()
    version = backend.status()["version"]
    tmp = backend.home / "resources.json.tmp"
    tmp.symlink_to("/dev/full")
    with pytest.raises(MeshkitError) as err:
        mesh.apply(*ALL_V2)
    message = str(err.value)
    assert "No space left on device" in message and "nothing was applied" in message and "\n" not in message
    assert mesh.get("VirtualService", "recommendation") == []
    assert backend.status()["version"] == version  # nothing was pushed
    assert mesh.load(n=20, concurrency=4, flags=False).summary()["versions"].keys() <= {"v1", "v2"}
    # the disk has room again: the same apply goes through, and survives a control plane restart
    assert not tmp.exists()
    mesh.apply(*ALL_V2)
    backend.restart()
    assert [r["metadata"]["name"] for r in mesh.get("VirtualService")] == ["customer-gateway", "recommendation"]
    mesh.reset()


def test_admission_and_the_proxies_judge_a_push_with_the_same_compiler() -> None:
    """What admission refuses is exactly what a proxy would reject (no mesh: one real Sidecar)."""
    from meshkit.backends.local.proxy.config import ProxyIdentity
    from meshkit.backends.local.proxy.sidecar import Sidecar, check_push

    identity = ProxyIdentity("preference-v1-x", "preference", "v1", {"app": "preference", "version": "v1"},
                             "tutorial", "preference")
    vs: dict[str, object] = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                             "metadata": {"name": "recommendation", "namespace": "tutorial"},
                             "spec": {"hosts": ["recommendation"],
                                      "http": [{"route": [{"destination": {"host": "recommendation"},
                                                           "weight": 100}]}]}}
    broken = json.loads(json.dumps(vs))
    broken["spec"]["http"][0]["route"][0]["weight"] = "most"
    base = {"services": [{"name": "recommendation", "namespace": "tutorial", "port": 8080}], "endpoints": []}
    sidecar = Sidecar(identity)
    assert sidecar.apply_snapshot({**base, "version": 1, "resources": [vs]}) == []
    errors, _ = check_push({**base, "version": 2, "resources": [broken]}, identity)
    rejected = sidecar.apply_snapshot({**base, "version": 2, "resources": [broken]})
    assert rejected == errors == ["VirtualService tutorial/recommendation rejected: ValueError: "
                                  "invalid literal for int() with base 10: 'most'"]
    assert sidecar.view.version == 2  # the push was taken ...
    assert sidecar.accepted[("VirtualService", "tutorial", "recommendation")] == vs  # ... with the last good one
