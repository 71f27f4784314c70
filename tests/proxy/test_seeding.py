"""Each proxy's random streams: reproducible under MESHKIT_SEED, fresh entropy without it."""

from __future__ import annotations

import pytest

from meshkit.backends.local.proxy.config import FaultSpec, ProxyIdentity
from meshkit.backends.local.proxy.fault import FaultFilter
from meshkit.backends.local.proxy.seeding import SEED_ENV, proxy_rng
from meshkit.backends.local.proxy.sidecar import Sidecar
from meshkit.http1 import Response
from tests.proxy.support import Sleeps, exchange, make_route, run


def _draws(name: str, stream: str = "fault", n: int = 8) -> list[int]:
    rng = proxy_rng(name, stream)
    return [rng.randrange(1_000_000) for _ in range(n)]


def test_a_seed_gives_the_same_draws_per_proxy_and_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SEED_ENV, "42")
    assert _draws("preference-v1#0") == _draws("preference-v1#0")
    assert _draws("preference-v1#0") != _draws("preference-v1#1")  # replicas draw apart
    assert _draws("preference-v1#0") != _draws("preference-v1#0", "main")  # faults apart from routing
    monkeypatch.setenv(SEED_ENV, "43")
    other = _draws("preference-v1#0")
    monkeypatch.setenv(SEED_ENV, "42")
    assert other != _draws("preference-v1#0")


def test_without_a_seed_every_proxy_draws_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SEED_ENV, raising=False)
    # 8 draws of 1e6 values colliding by chance: 1e-48
    assert _draws("preference-v1#0") != _draws("preference-v1#0")


def _aborts(sidecar: Sidecar, n: int) -> int:
    filt = FaultFilter(sidecar.fault_rng, Sleeps())

    async def upstream(_ex: object) -> Response:
        return Response(200, {}, b"ok")

    async def go() -> int:
        spec = FaultSpec(abort_status=503, abort_percent=50)
        return sum([(await filt(exchange(make_route(fault=spec)), upstream)).status == 503 for _ in range(n)])

    return run(go())


def test_a_sidecar_seeds_its_fault_stream_from_its_stable_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SEED_ENV, "7")
    me = ProxyIdentity("preference-v1-6b8c7f5d9c-x2x7q", "preference", "v1", {"app": "preference"})
    twin = ProxyIdentity("preference-v1-6b8c7f5d9c-zzzzz", "preference", "v1", {"app": "preference"})
    a = Sidecar(me, seed_name="preference-v1#0")
    b = Sidecar(twin, seed_name="preference-v1#0")  # the same workload and ordinal in the next run
    first, again = _aborts(a, 1000), _aborts(b, 1000)
    assert first == again  # the same sample whatever the pod's random suffix
    # and still a fair 50 % draw: binomial sd 15.8, four of them is 63
    assert abs(first - 500) <= 63, first
