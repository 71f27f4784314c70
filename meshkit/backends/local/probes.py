"""Readiness and liveness probes of the local pods: the kubelet's, rewritten as Istio rewrites them.

Istio's injector points the kubelet's HTTP probes at the agent's port (``/app-health/...``), and
the agent asks the app. Here the control plane (the kubelet) asks each pod's admin port, the pod
asks its app's ``/health/ready`` and ``/health/live`` (and its sidecar whether it has config), and
answers within the probe's timeout or not at all. A frozen pod (SIGSTOP, a handler that blocks
its event loop) stops answering: after ``readiness_failures`` failed probes in a row it goes NOT
READY and leaves every proxy's endpoints; after ``liveness_failures`` it is killed and replaced.

Probes run in worker threads with socket timeouts, so a busy control plane cannot make a healthy
pod look dead. ``MESHKIT_PROBES`` tunes them (``period=1,timeout=1,readiness=3,liveness=10``).

Example::

    settings = ProbeSettings.from_env("period=0.5,timeout=0.5")
    ready, live, detail = probe_once(admin_port, settings.timeout_s)
"""

from __future__ import annotations

import http.client
import json
import os
from dataclasses import dataclass, fields, replace
from typing import Any

from meshkit.errors import MeshkitError

ENV = "MESHKIT_PROBES"
PATH = "/app-health/probe"
_NAMES = {"period": "period_s", "timeout": "timeout_s", "readiness": "readiness_failures",
          "liveness": "liveness_failures"}


@dataclass(frozen=True)
class ProbeSettings:
    period_s: float = 1.0
    timeout_s: float = 1.0
    readiness_failures: int = 3
    liveness_failures: int = 10

    @classmethod
    def from_env(cls, value: str | None = None) -> ProbeSettings:
        """Parse ``period=1,timeout=1,readiness=3,liveness=10`` (any subset); one-line error otherwise."""
        text = os.environ.get(ENV, "") if value is None else value
        settings = cls()
        types = {f.name: f.type for f in fields(cls)}
        for item in filter(None, (x.strip() for x in text.split(","))):
            name, _, raw = item.partition("=")
            attr = _NAMES.get(name.strip())
            try:
                number: float = float(raw) if attr and types[attr] in ("float", float) else int(raw)
            except ValueError:
                attr = None
            if attr is None or number <= 0 or number > 3600:
                raise MeshkitError(f"{ENV}: {item!r} is not one of period=S, timeout=S, readiness=N, liveness=N "
                                   "(positive numbers)")
            changes: dict[str, Any] = {attr: number}
            settings = replace(settings, **changes)
        return settings


def probe_once(port: int, timeout_s: float, headers: dict[str, str] | None = None) -> tuple[bool, bool, str]:
    """Ask a pod's admin port once (blocking): (ready, live, why when not)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", PATH, headers={"host": "localhost", **(headers or {})})
        resp = conn.getresponse()
        body = resp.read(4096)
    except TimeoutError:
        return False, False, f"Get \"http://127.0.0.1:{port}{PATH}\": context deadline exceeded " \
                             f"(no answer within {timeout_s:g}s)"
    except OSError as exc:
        return False, False, f"Get \"http://127.0.0.1:{port}{PATH}\": {exc.strerror or type(exc).__name__}"
    finally:
        conn.close()
    try:
        result = json.loads(body)
        return bool(result["ready"]), bool(result["live"]), str(result.get("detail", ""))
    except (ValueError, KeyError, TypeError):
        return False, resp.status < 500, f"HTTP probe failed with statuscode: {resp.status}"
