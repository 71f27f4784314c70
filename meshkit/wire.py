"""JSON for the local mesh's internal traffic (telemetry batches, config snapshots).

orjson is several times faster than the standard library where it is installed; both produce the
same JSON, so the choice is invisible to the other side.

Example::

    body = dumps({"rows": [[1, "a"]]}); loads(body)["rows"]
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson

    def dumps(data: Any) -> bytes:
        return orjson.dumps(data, default=str)

    def loads(data: bytes | str) -> Any:
        return orjson.loads(data)

except ImportError:  # pragma: no cover - exercised where orjson is absent

    def dumps(data: Any) -> bytes:
        return json.dumps(data, separators=(",", ":"), default=str).encode()

    def loads(data: bytes | str) -> Any:
        return json.loads(data)
