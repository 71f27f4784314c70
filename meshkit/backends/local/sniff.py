"""What an eavesdropper sees on the wire to a pod: the tutorial's ksniff/tcpdump moment, no root.

While sniffing, a pod puts a small relay in front of its inbound listeners and announces the
relay's ports, so every new connection to the pod crosses it; the relay records the first bytes
of each direction. Plaintext shows readable HTTP headers (``x-b3-traceid``, ``x-request-id``...),
mTLS shows TLS records and ciphertext.

Example::

    tap = Tap("inbound", 41234)
    port = await tap.start()
    ...
    print(render(tap.captures()))
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

CAPTURE_BYTES = 4096
TLS_TYPES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data"}


class Tap:
    def __init__(self, name: str, target_port: int, capacity: int = 50) -> None:
        self.name = name
        self.target_port = target_port
        self.port = 0
        self._captures: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()

    def captures(self) -> list[dict[str, Any]]:
        return list(self._captures)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        capture = {"listener": self.name, "peer": f"{peer[0]}:{peer[1]}", "to_pod": bytearray(),
                   "from_pod": bytearray()}
        self._captures.append(capture)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        pumps = [
            asyncio.ensure_future(_pump(reader, up_writer, capture["to_pod"])),  # type: ignore[arg-type]
            asyncio.ensure_future(_pump(up_reader, writer, capture["from_pod"])),  # type: ignore[arg-type]
        ]
        for task in pumps:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.gather(*pumps, return_exceptions=True)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: bytearray) -> None:
    try:
        while data := await reader.read(65536):
            if len(seen) < CAPTURE_BYTES:
                seen.extend(data[: CAPTURE_BYTES - len(seen)])
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def tls_records(data: bytes) -> list[tuple[str, int]]:
    """The TLS record layer of a byte stream: (content type, length) per record."""
    out, i = [], 0
    while i + 5 <= len(data) and data[i] in TLS_TYPES and data[i + 1] == 3:
        length = int.from_bytes(data[i + 3 : i + 5], "big")
        out.append((TLS_TYPES[data[i]], length))
        i += 5 + length
    return out


def describe(capture: dict[str, Any]) -> dict[str, Any]:
    """A JSON-able view of one captured connection, as the CLI and the lab print it."""
    data = bytes(capture["to_pod"])
    records = tls_records(data)
    view: dict[str, Any] = {"listener": capture["listener"], "peer": capture["peer"], "bytes": len(data),
                            "encrypted": bool(records)}
    if records:
        view["tls_records"] = [f"{kind} ({length} bytes)" for kind, length in records[:8]]
        app = data.find(b"\x17\x03\x03")
        view["sample_hex"] = data[app + 5 : app + 37].hex(" ") if app >= 0 else data[:32].hex(" ")
    else:
        view["text"] = data.decode("latin-1")
    return view


def render(views: list[dict[str, Any]]) -> str:
    lines = []
    for v in views:
        kind = "mTLS" if v["encrypted"] else "plaintext"
        head = f"--- connection from {v['peer']} to the pod's {v['listener']} listener"
        lines.append(f"{head} ({kind}, {v['bytes']} bytes)")
        if v["encrypted"]:
            lines.append("TLS records: " + ", ".join(v["tls_records"]))
            lines.append(f"application data (ciphertext): {v['sample_hex']} ...")
        else:
            lines.extend(v["text"].rstrip("\r\n").splitlines()[:40])
    return "\n".join(lines) if lines else "nothing crossed the wire to the pod while sniffing"
