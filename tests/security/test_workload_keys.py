"""Workload keys as istio-agent makes them, and the keys the mesh CA signs for.

istio-agent: RSA 2048 unless ``ECC_SIGNATURE_ALGORITHM=ECDSA`` (then P-256, or P-384 under
``ECC_CURVE=P384``); istiod's self-signed root: RSA 2048, ``O=<trust domain>``, ten years from the
moment it is made, certificate signing only.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from meshkit.backends.local import earlykey
from meshkit.backends.local.ca import CertificateAuthority, CsrRefused, csr_for, spiffe_id_for
from meshkit.backends.local.workloadkey import KeySpec, describe_key
from meshkit.errors import InvalidConfig

CUSTOMER = spiffe_id_for("tutorial", "customer")
REFUSAL = "the CA signs RSA keys of 2048 to 4096 bits and ECDSA P-256 or P-384 keys"


@pytest.mark.parametrize(("env", "kind"), [
    ({}, "RSA 2048"),
    ({"WORKLOAD_RSA_KEY_SIZE": "3072"}, "RSA 3072"),
    ({"ECC_SIGNATURE_ALGORITHM": "ECDSA"}, "ECDSA P-256"),
    ({"ECC_SIGNATURE_ALGORITHM": "ECDSA", "ECC_CURVE": "P384"}, "ECDSA P-384"),
    ({"ECC_SIGNATURE_ALGORITHM": "ECDSA", "ECC_CURVE": "P-384"}, "ECDSA P-256"),  # istio-agent: not P384 → P-256
    ({"ECC_SIGNATURE_ALGORITHM": "ECDSA", "WORKLOAD_RSA_KEY_SIZE": "1024"}, "ECDSA P-256"),
])
def test_the_agents_key_follows_its_environment(env: dict[str, str], kind: str) -> None:
    assert KeySpec.from_env(env).describe() == kind


@pytest.mark.parametrize(("env", "message"), [
    ({"ECC_SIGNATURE_ALGORITHM": "ecdsa"}, "ECC_SIGNATURE_ALGORITHM='ecdsa': unsupported EC signature algorithm"),
    ({"ECC_SIGNATURE_ALGORITHM": "ED25519"}, "ECC_SIGNATURE_ALGORITHM='ED25519': unsupported EC signature algorithm"),
    ({"WORKLOAD_RSA_KEY_SIZE": "1024"}, "WORKLOAD_RSA_KEY_SIZE=1024: the key size does not meet the minimum of 2048"),
    ({"WORKLOAD_RSA_KEY_SIZE": "big"}, "WORKLOAD_RSA_KEY_SIZE='big': not a number of bits"),
    ({"WORKLOAD_RSA_KEY_SIZE": "8192"}, "WORKLOAD_RSA_KEY_SIZE=8192: the local mesh makes RSA keys of at most 4096"),
])
def test_a_bad_agent_setting_is_one_located_message(env: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidConfig) as err:
        KeySpec.from_env(env)
    assert len(err.value.problems) == 1 and err.value.problems[0].startswith(message)


def test_the_root_is_what_istiods_self_signed_ca_makes(tmp_path: Path) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ca = CertificateAuthority.load_or_create(tmp_path)
    after = dt.datetime.now(dt.UTC)
    root = x509.load_pem_x509_certificate(ca.root_pem.encode())
    assert describe_key(root.public_key()) == "RSA 2048"
    assert root.subject.rfc4514_string() == root.issuer.rfc4514_string() == "O=cluster.local"
    assert before <= root.not_valid_before_utc <= after  # valid from the moment it is made, not back-dated
    assert root.not_valid_after_utc - root.not_valid_before_utc == dt.timedelta(days=3650)
    assert root.signature_hash_algorithm is not None and root.signature_hash_algorithm.name == "sha256"
    usage = root.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign
    assert not (usage.value.crl_sign or usage.value.digital_signature or usage.value.key_encipherment)
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).critical
    assert 0 < root.serial_number < 2**128


def test_a_leaf_is_back_dated_two_minutes_and_never_outlives_the_root(ca: CertificateAuthority) -> None:
    root = x509.load_pem_x509_certificate(ca.root_pem.encode())
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    leaf = ca.issue("tutorial", "customer", ttl_s=600, now=now)
    assert leaf.not_before == now - dt.timedelta(minutes=2) and leaf.not_after == now + dt.timedelta(seconds=600)
    late = root.not_valid_after_utc - dt.timedelta(hours=1)
    assert ca.issue("tutorial", "customer", ttl_s=86400, now=late).not_after == root.not_valid_after_utc


@pytest.mark.parametrize("make", [
    lambda: rsa.generate_private_key(65537, 2048),
    lambda: ec.generate_private_key(ec.SECP256R1()),
    lambda: ec.generate_private_key(ec.SECP384R1()),
], ids=["RSA 2048", "ECDSA P-256", "ECDSA P-384"])
def test_the_ca_signs_the_keys_istio_agent_and_ztunnel_make(ca: CertificateAuthority, make) -> None:  # type: ignore[no-untyped-def]
    key = make()
    cert = ca.sign_csr(csr_for(key, CUSTOMER), "tutorial", "customer")
    assert describe_key(cert.public_key()) == describe_key(key)
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.root_pem.encode()))


def _ed25519_csr() -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).add_extension(
        x509.SubjectAlternativeName([x509.UniformResourceIdentifier(CUSTOMER)]), critical=True)
    return builder.sign(key, None).public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(("csr", "kind"), [
    (lambda: csr_for(rsa.generate_private_key(65537, 1024), CUSTOMER), "RSA 1024"),
    (lambda: csr_for(ec.generate_private_key(ec.SECP521R1()), CUSTOMER), "ECDSA secp521r1"),
    (lambda: csr_for(ec.generate_private_key(ec.SECP256K1()), CUSTOMER), "ECDSA secp256k1"),
    (_ed25519_csr, "Ed25519"),
], ids=["RSA 1024", "P-521", "secp256k1", "Ed25519"])
def test_the_ca_refuses_any_other_key_naming_it(ca: CertificateAuthority, csr, kind: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CsrRefused) as err:
        ca.sign_csr(csr(), "tutorial", "customer")
    assert str(err.value) == f"the CSR's key is {kind}; {REFUSAL}"


def test_the_first_key_is_made_by_a_child_while_the_pod_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ECC_SIGNATURE_ALGORITHM", raising=False)
    monkeypatch.delenv("WORKLOAD_RSA_KEY_SIZE", raising=False)
    earlykey.prefetch(["pod", '{"sidecar": true}'])
    assert set(earlykey._pending) == {"workload"}
    pid = earlykey._pending["workload"][0]
    ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert ppid == os.getpid()  # a child of this process makes it (running, or exited and not yet reaped)
    key = earlykey.take(KeySpec.from_env())
    assert describe_key(key) == "RSA 2048"
    assert not Path(f"/proc/{pid}").exists()  # reaped: no zombie left behind
    assert not earlykey._pending and describe_key(earlykey.take(KeySpec("ECDSA"))) == "ECDSA P-256"
    # ztunnel and a pod without a proxy start nothing
    earlykey.prefetch(["pod", '{"service": "ztunnel", "sidecar": true}'])
    earlykey.prefetch(["pod", '{"service": "curl", "sidecar": false}'])
    assert not earlykey._pending


def test_a_prefetched_key_of_another_kind_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECC_SIGNATURE_ALGORITHM", "ECDSA")
    earlykey.prefetch(["pod", '{"waypoint": true}'])
    assert describe_key(earlykey.take(KeySpec("RSA"))) == "RSA 2048"
    assert not earlykey._pending


def test_a_new_control_planes_root_and_jwt_keys_are_made_by_children(tmp_path: Path) -> None:
    earlykey.prefetch_root(["controlplane", "--home", str(tmp_path), "--profile", "current"])
    pids = {slot: pid for slot, (pid, _) in earlykey._pending.items()}
    assert set(pids) == {"root", "jwt"}
    ca = CertificateAuthority.load_or_create(tmp_path / "ca", make_root_key=earlykey.take_root)
    assert describe_key(x509.load_pem_x509_certificate(ca.root_pem.encode()).public_key()) == "RSA 2048"
    assert describe_key(earlykey.take_jwt()) == "RSA 2048"
    assert not earlykey._pending and not any(Path(f"/proc/{pid}").exists() for pid in pids.values())
    # a home that has its keys already starts no child
    (tmp_path / "jwt").mkdir()
    (tmp_path / "jwt" / "jwt-key.pem").write_text("kept")
    earlykey.prefetch_root(["controlplane", "--home", str(tmp_path)])
    assert not earlykey._pending


def test_a_rotations_key_is_made_by_a_child_while_the_loop_serves() -> None:
    import asyncio

    async def run() -> tuple[list[str], int]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(ticker())
        keys = [describe_key(await earlykey.make(KeySpec(*spec))) for spec in
                (("RSA", 2048), ("ECDSA", 2048, "P-256"), ("ECDSA", 2048, "P-384"))]
        stop.set()
        await task
        return keys, ticks

    keys, ticks = asyncio.run(run())
    assert keys == ["RSA 2048", "ECDSA P-256", "ECDSA P-384"]
    assert ticks > 1  # the loop went on while it waited (a key made in-process would not let it run)
    assert not _zombies()  # every child reaped


def _zombies() -> list[str]:
    """This process's children that exited and were never reaped."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == os.getpid():
            found.append(pid)
    return found


def test_a_first_key_child_that_hangs_does_not_hold_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    # a child that never answers (stopped, deadlocked): the start waits a bounded time, then makes the key itself
    monkeypatch.setattr(earlykey, "COLLECT_TIMEOUT", 0.5, raising=False)
    earlykey._fork("workload", lambda: (time.sleep(3600), b"")[1])
    pid = earlykey._pending["workload"][0]
    got: list[str] = []
    taker = threading.Thread(target=lambda: got.append(describe_key(earlykey.take(KeySpec("ECDSA")))))
    taker.start()
    taker.join(20)
    hung = taker.is_alive()
    if hung:  # unblock the test's own thread before failing
        os.kill(pid, 9)
        taker.join()
    assert not hung
    assert got == ["ECDSA P-256"]
    assert not Path(f"/proc/{pid}").exists()  # ended and reaped: no child left behind
    assert not earlykey._pending


def test_a_key_child_holds_none_of_the_proxys_connections() -> None:
    """A connection the proxy closes while a rotation's key is being made is closed on the wire then,
    not when the child exits (a child holding its socket would hold back the peer's EOF, and a
    close-delimited body's end, for as long as the key takes)."""
    import socket
    import time

    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    served, _ = listener.accept()
    read, pid = earlykey._spawn(lambda: (time.sleep(30), b"")[1])  # a child still making its key
    try:
        served.close()
        listener.close()
        client.settimeout(5)
        try:
            got: bytes | None = client.recv(1)
        except TimeoutError:
            got = None
        assert got == b""  # the peer's EOF, while the child still runs
    finally:
        client.close()
        earlykey._kill(pid)
        os.waitpid(pid, 0)
        os.close(read)


def test_a_bad_agent_setting_stops_a_proxys_pod_with_one_line_and_no_other_pod(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    from meshkit.backends.local.pod import Pod

    args = {"pod": "customer-1", "control": "http://127.0.0.1:9", "sidecar": True, "service": "customer",
            "namespace": "tutorial", "service_account": "customer"}
    env = {**os.environ, "ECC_SIGNATURE_ALGORITHM": "RSA"}
    done = subprocess.run([sys.executable, "-m", "meshkit.backends.local.pod", json.dumps(args)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["pod customer-1: ECC_SIGNATURE_ALGORITHM='RSA': unsupported EC signature "
                                        "algorithm (set ECDSA, or leave it unset for RSA)"]
    # a pod without a proxy has no istio-agent: the agent's settings are not its own
    monkeypatch.setenv("ECC_SIGNATURE_ALGORITHM", "RSA")
    with pytest.raises(InvalidConfig, match="ECC_SIGNATURE_ALGORITHM"):
        Pod(args)
    assert Pod({**args, "sidecar": False}).key_spec == KeySpec()
