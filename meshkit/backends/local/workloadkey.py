"""The workload's private key, chosen the way istio-agent (pilot-agent) chooses it.

istio-agent makes each proxy's key itself, so the key never leaves the pod, and picks its kind
from the proxy's environment (in Istio set through ``proxyMetadata``; here the pods inherit the
environment of ``meshkit up``):

* unset ``ECC_SIGNATURE_ALGORITHM``: an RSA key of ``WORKLOAD_RSA_KEY_SIZE`` bits (default 2048;
  fewer than 2048 is refused);
* ``ECC_SIGNATURE_ALGORITHM=ECDSA`` (exactly that spelling): an ECDSA key on ``ECC_CURVE``, which
  is P-384 for ``P384`` and P-256 for anything else, the default included;
* any other value of ``ECC_SIGNATURE_ALGORITHM``: no key at all, so no certificate.

ztunnel is different: it always makes ECDSA P-256 keys, whatever the environment says.

Example:
    >>> spec = KeySpec.from_env({})
    >>> spec.describe()
    'RSA 2048'
    >>> KeySpec.from_env({"ECC_SIGNATURE_ALGORITHM": "ECDSA"}).describe()
    'ECDSA P-256'
    >>> KeySpec.from_env({"ECC_SIGNATURE_ALGORITHM": "ECDSA", "ECC_CURVE": "P384"}).describe()
    'ECDSA P-384'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from meshkit.errors import InvalidConfig

ECC_SIGNATURE_ALGORITHM = "ECC_SIGNATURE_ALGORITHM"
ECC_CURVE = "ECC_CURVE"
WORKLOAD_RSA_KEY_SIZE = "WORKLOAD_RSA_KEY_SIZE"
CA_RSA_KEY_SIZE = "CITADEL_SELF_SIGNED_CA_RSA_KEY_SIZE"  # istiod's, for its self-signed root
DEFAULT_RSA_BITS = 2048
MIN_RSA_BITS = 2048
# Istio sets no ceiling; here a larger key would only make a pod's start take seconds per key
MAX_RSA_BITS = 4096
CURVES: dict[str, ec.EllipticCurve] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}

WorkloadKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class KeySpec:
    """Which key a workload makes: ``algorithm`` is ``"RSA"`` (with ``rsa_bits``) or ``"ECDSA"`` (with ``curve``).

    >>> KeySpec("RSA", 2048).generate().key_size
    2048
    """

    algorithm: str = "RSA"
    rsa_bits: int = DEFAULT_RSA_BITS
    curve: str = "P-256"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KeySpec:
        """The key istio-agent would make under ``env`` (default: this process's environment).

        A bad setting raises :class:`InvalidConfig` naming the variable, as the agent fails to make
        its CSR.

        >>> KeySpec.from_env({"WORKLOAD_RSA_KEY_SIZE": "1024"})
        Traceback (most recent call last):
        meshkit.errors.InvalidConfig: WORKLOAD_RSA_KEY_SIZE=1024: the key size does not meet the minimum of 2048 bits
        """
        env = os.environ if env is None else env
        algorithm = env.get(ECC_SIGNATURE_ALGORITHM, "")
        if algorithm == "ECDSA":
            return cls("ECDSA", curve="P-384" if env.get(ECC_CURVE, "") == "P384" else "P-256")
        if algorithm:
            raise InvalidConfig([f"{ECC_SIGNATURE_ALGORITHM}={algorithm!r}: unsupported EC signature algorithm "
                                 "(set ECDSA, or leave it unset for RSA)"])
        raw = env.get(WORKLOAD_RSA_KEY_SIZE, "").strip()
        if not raw:
            return cls("RSA", DEFAULT_RSA_BITS)
        try:
            bits = int(raw)
        except ValueError:
            raise InvalidConfig([f"{WORKLOAD_RSA_KEY_SIZE}={raw!r}: not a number of bits"]) from None
        if bits < MIN_RSA_BITS:
            raise InvalidConfig([f"{WORKLOAD_RSA_KEY_SIZE}={bits}: the key size does not meet the minimum "
                                 f"of {MIN_RSA_BITS} bits"])
        if bits > MAX_RSA_BITS:
            raise InvalidConfig([f"{WORKLOAD_RSA_KEY_SIZE}={bits}: the local mesh makes RSA keys of at most "
                                 f"{MAX_RSA_BITS} bits"])
        return cls("RSA", bits)

    def generate(self) -> WorkloadKey:
        """A fresh private key of this kind (RSA-2048 takes tens of milliseconds, ECDSA well under one)."""
        if self.algorithm == "ECDSA":
            return ec.generate_private_key(CURVES[self.curve])
        return rsa.generate_private_key(public_exponent=65537, key_size=self.rsa_bits)

    def describe(self) -> str:
        """``"RSA 2048"`` or ``"ECDSA P-256"``: what ``openssl x509 -text`` shows of the key."""
        return f"RSA {self.rsa_bits}" if self.algorithm == "RSA" else f"ECDSA {self.curve}"


def describe_key(key: object) -> str:
    """A public or private key as ``"RSA 2048"``, ``"ECDSA P-256"``, or its class name for any other kind.

    >>> describe_key(KeySpec("ECDSA").generate().public_key())
    'ECDSA P-256'
    """
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        names = {curve.name: label for label, curve in CURVES.items()}
        return f"ECDSA {names.get(key.curve.name, key.curve.name)}"
    if isinstance(key, dsa.DSAPrivateKey | dsa.DSAPublicKey):
        return f"DSA {key.key_size}"
    for kind, name in ((ed25519.Ed25519PublicKey, "Ed25519"), (ed25519.Ed25519PrivateKey, "Ed25519"),
                       (ed448.Ed448PublicKey, "Ed448"), (ed448.Ed448PrivateKey, "Ed448")):
        if isinstance(key, kind):
            return name
    return type(key).__name__


def key_pem(key: WorkloadKey) -> str:
    """The key as istio-agent writes it without ``PKCS8_KEY``: PKCS#1 ``RSA PRIVATE KEY`` or SEC1 ``EC PRIVATE KEY``.

    >>> key_pem(KeySpec("ECDSA").generate()).splitlines()[0]
    '-----BEGIN EC PRIVATE KEY-----'
    """
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


def root_key_bits(env: Mapping[str, str] | None = None) -> int:
    """The root key's size: ``CITADEL_SELF_SIGNED_CA_RSA_KEY_SIZE`` (istiod's setting), 2048 unless set.

    >>> root_key_bits({})
    2048
    """
    raw = (os.environ if env is None else env).get(CA_RSA_KEY_SIZE, "").strip()
    if not raw:
        return 2048
    if not raw.isdigit() or not MIN_RSA_BITS <= int(raw) <= MAX_RSA_BITS:
        raise InvalidConfig([f"{CA_RSA_KEY_SIZE}={raw!r}: must be a number of bits from {MIN_RSA_BITS} "
                             f"to {MAX_RSA_BITS}"])
    return int(raw)
