"""A stand-in for worldtimeapi.org, outside the mesh: recommendation v3's egress target.

It answers ``GET /api/timezone/Europe/Madrid`` with the JSON fields v3 reads (``datetime`` ...),
so the egress lesson (blocked under REGISTRY_ONLY, opened by a ServiceEntry) works offline.

Example::

    svc = TimeService(); await svc.start(); print(svc.port)
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

from meshkit.http1 import Request, Response, serve


class TimeService:
    def __init__(self) -> None:
        self.port = 0
        self.server: asyncio.base_events.Server | None = None

    async def start(self, port: int = 0) -> int:
        self.server = await serve(self.handle, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def handle(self, req: Request) -> Response:
        path = req.path.split("?", 1)[0]
        if not path.startswith("/api/timezone/"):
            return Response(404, {"content-type": "application/json"}, b'{"error":"unknown location"}')
        zone = path[len("/api/timezone/") :]
        # Madrid is UTC+1 in winter; enough for a lab that only prints the value
        offset = timedelta(hours=1) if zone == "Europe/Madrid" else timedelta(0)
        now = datetime.now(timezone(offset))
        body = {
            "abbreviation": "CET" if offset else "UTC",
            "datetime": now.isoformat(timespec="microseconds"),
            "timezone": zone,
            "utc_offset": "+01:00" if offset else "+00:00",
            "unixtime": int(now.timestamp()),
        }
        return Response(200, {"content-type": "application/json; charset=utf-8"}, json.dumps(body).encode())

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
