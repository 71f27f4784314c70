"""Bulk transfers give way while the CPU is contended (meshkit.http1.BulkPacer).

The rule is checked on injected clocks (wall, CPU and run-queue wait), so each step is exact; then
a real body crosses a real server with a pacer whose wait clock says the machine is contended,
and the reader really sleeps and the process really goes idle.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from meshkit import http1
from meshkit.backends.local import pod
from meshkit.http1 import BulkPacer, Request, Response, connect, serve


class Clocks:
    """Wall, CPU and wait time that move only when the test says."""

    def __init__(self) -> None:
        self.wall = 100.0
        self.cpu = 5.0
        self.waited = 1.0

    def step(self, wall: float, cpu: float, waited: float = 0.0) -> None:
        self.wall += wall
        self.cpu += cpu
        self.waited += waited

    def pacer(self, **kw: float) -> BulkPacer:
        return BulkPacer(clock=lambda: self.wall, cpu_clock=lambda: self.cpu, wait_clock=lambda: self.waited, **kw)

    def contend(self, pacer: BulkPacer, windows: int, cpu: float) -> None:
        """``windows`` windows of 10 ms spent waiting for a CPU half the time, each debt slept off."""
        for _ in range(windows):
            self.step(wall=0.01, cpu=cpu, waited=0.005)
            self.step(wall=pacer.due(), cpu=0.0)


def test_a_machine_with_cpu_to_spare_never_paces() -> None:
    clocks = Clocks()
    pacer = clocks.pacer()
    for _ in range(50):
        clocks.step(wall=0.01, cpu=0.01, waited=0.0005)  # busy the whole window, 5 % waiting: not contended
        assert pacer.due() == 0.0
    assert pacer.share == 1.0


def test_within_a_window_nothing_is_judged() -> None:
    clocks = Clocks()
    pacer = clocks.pacer()
    clocks.step(wall=0.009, cpu=0.009, waited=0.009)
    assert pacer.due() == 0.0 and pacer.share == 1.0


def test_each_contended_window_cuts_the_share_by_a_third_down_to_the_floor() -> None:
    clocks = Clocks()
    pacer = clocks.pacer(floor=0.1)
    shares = []
    for _ in range(8):
        clocks.step(wall=0.01, cpu=0.01, waited=0.002)  # 20 % of the window spent waiting for a CPU
        debt = pacer.due()
        shares.append(round(pacer.share, 4))
        # a whole window of CPU at share s is paid back by 0.01 / s - 0.01 of sleep (at most MAX_SLEEP)
        assert debt == pytest.approx(min(0.01 / pacer.share - 0.01, BulkPacer.MAX_SLEEP))
        clocks.step(wall=debt, cpu=0.0)  # the reader slept it off
    assert shares == [0.6667, 0.4444, 0.2963, 0.1975, 0.1317, 0.1, 0.1, 0.1]


def test_quiet_windows_give_the_share_back_a_twentieth_at_a_time() -> None:
    clocks = Clocks()
    pacer = clocks.pacer(floor=0.1)
    clocks.contend(pacer, windows=10, cpu=0.001)
    assert pacer.share == 0.1
    for expected in (0.15, 0.2, 0.25):
        clocks.step(wall=0.01, cpu=0.001, waited=0.0)
        pacer.due()
        assert pacer.share == pytest.approx(expected)


def test_cpu_within_the_share_owes_no_sleep() -> None:
    clocks = Clocks()
    pacer = clocks.pacer(floor=0.5)
    clocks.contend(pacer, windows=5, cpu=0.01)
    assert pacer.share == 0.5
    clocks.step(wall=0.02, cpu=0.004, waited=0.02)  # 20 % of a core against a share of 50 %
    assert pacer.due() == 0.0


def test_a_long_pause_is_not_a_window() -> None:
    """Bulk bytes that stopped for a second say nothing about the CPU they would use."""
    clocks = Clocks()
    pacer = clocks.pacer()
    clocks.step(wall=1.0, cpu=1.0, waited=1.0)
    assert pacer.due() == 0.0 and pacer.share == 1.0
    clocks.step(wall=0.01, cpu=0.01, waited=0.0)
    assert pacer.due() == 0.0  # and the next window starts from there, not from before the pause


def test_a_floor_is_a_share_of_one_core() -> None:
    for floor in (0.0, -1.0, 1.5):
        with pytest.raises(ValueError, match="share of one core"):
            BulkPacer(floor=floor)


def test_pods_pace_unless_told_not_to(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESHKIT_BULK_PACING", raising=False)
    assert isinstance(pod.bulk_pacer(), BulkPacer)
    for off in ("off", "0", "false", "No"):
        monkeypatch.setenv("MESHKIT_BULK_PACING", off)
        assert pod.bulk_pacer() is None


async def _upload(size: int, pacer: BulkPacer | None) -> tuple[int, float, float]:
    """POST ``size`` bytes to a server in this process that reads the body to its end, with
    ``pacer`` installed; (bytes the server read, wall seconds, CPU seconds of this process)."""
    read: list[int] = []

    async def sink(req: Request) -> Response:
        # a body up to the 1 MiB buffer limit arrives whole, a larger one as a stream
        read.append(len(req.body) if req.stream is None else await req.stream.discard())
        return Response(200, {"content-type": "text/plain"}, b"ok\n")

    previous = http1.install_pacer(pacer)
    server = await serve(sink, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        conn = await connect("127.0.0.1", port)
        block = b"p" * 65536

        async def pieces():  # type: ignore[no-untyped-def]
            for _ in range(size // len(block)):
                yield block

        body = http1.GeneratedBody(pieces(), size)
        wall, cpu = time.perf_counter(), time.process_time()
        resp = await conn.roundtrip(Request("POST", "/", {"host": "sink", "content-length": str(size)}, stream=body))
        assert resp.status == 200
        return read[0], time.perf_counter() - wall, time.process_time() - cpu
    finally:
        http1.install_pacer(previous)
        server.close()
        await server.wait_closed()


def test_a_contended_process_holds_a_real_upload_back() -> None:
    """64 MiB over a real socket while the wait clock says every moment was spent waiting for a
    CPU. The body arrives whole; the share fell; the reader slept (a real sleep: the wall time
    covers every second of it); and the process used a small part of one core (unpaced, this
    transfer keeps a core busy: about 40 ms of CPU in 40 ms here; paced, about 95 ms in 0.85 s).
    A busier machine only lowers the process's CPU against the wall time."""
    size = 64 * 2**20
    # always waiting, so always contended; 2 ms windows reach the floor within the first few MiB
    pacer = BulkPacer(floor=0.1, window=0.002, wait_clock=time.perf_counter)
    got, wall, cpu = asyncio.run(_upload(size, pacer))
    assert got == size
    assert pacer.share < 0.5
    assert 0 < pacer.slept <= wall, (pacer.slept, wall)  # it slept, and for real: the wall time covers it
    assert cpu <= 0.25 * wall, (cpu, wall)


def test_an_uncontended_process_and_small_bodies_are_never_held_back() -> None:
    never = BulkPacer(wait_clock=lambda: 0.0)
    got, _, _ = asyncio.run(_upload(16 * 2**20, never))
    assert got == 16 * 2**20 and never.slept == 0.0 and never.share == 1.0
    always = BulkPacer(wait_clock=time.perf_counter)
    got, _, _ = asyncio.run(_upload(1024 * 1024, always))  # not past the first MiB: not bulk
    assert got == 1024 * 1024 and always.slept == 0.0
