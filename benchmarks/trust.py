"""What the trust boundary costs per check, measured in-process (no mesh needed).

None of these checks sits on the request path between pods: the owner guard runs once per
connection on owner-only ports (a sidecar's inbound and the gateway are not guarded), a pod's token
is checked once per control-plane request (a long poll, a telemetry batch every 0.2 s), and the
listener-owner check once per new connection that carries a secret. The figures show they stay
small beside a proxy pass (about 0.1-0.3 ms here).

Example::

    python -m benchmarks.trust
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from meshkit.backends.local.trust import (
    OWNER_HEADER,
    authenticate,
    held_by_another,
    is_owner,
    owner_verifier,
    pod_token,
)


def _per_call_us(fn: Callable[[], object], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n * 1e6


def measure(n: int = 20_000) -> dict[str, float]:
    """Microseconds per check: owner header, control-plane token (owner and pod), listener owner."""
    credential = "c" * 43
    verifier = owner_verifier(credential)
    owner_headers = {OWNER_HEADER: credential}
    pod_headers = {"authorization": f"Bearer {pod_token(credential, 'recommendation-v2-abc-12345')}"}
    cp_headers = {"authorization": f"Bearer {credential}"}
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        return {
            "owner header (per connection)": _per_call_us(lambda: is_owner(owner_headers, verifier), n),
            "control plane: owner credential": _per_call_us(lambda: authenticate(cp_headers, credential), n),
            "control plane: pod token": _per_call_us(lambda: authenticate(pod_headers, credential), n),
            "listener owner (per new connection)": _per_call_us(lambda: held_by_another(port), n // 20),
        }


def main() -> None:
    print("trust boundary, cost per check")
    for name, us in measure().items():
        print(f"  {name:38s} {us:8.2f} µs")


if __name__ == "__main__":
    main()
