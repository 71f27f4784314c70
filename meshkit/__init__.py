"""meshkit: a hands-on lab for the Istio service mesh.

Example::

    import meshkit
    mesh = meshkit.up()                 # local mesh on 127.0.0.1, or up(backend="kind")
    print(mesh.curl())                  # (200, "customer => preference => recommendation v1 from ...")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from meshkit.errors import InvalidConfig, MeshkitError, MeshNotRunning, NotFound

if TYPE_CHECKING:
    from meshkit.mesh import Mesh, connect, up
    from meshkit.traffic import LoadResult, TrafficRunner

# Every pod and the control plane import this package too (for meshkit.http1, meshkit.errors ...):
# the learner-facing API and its load generator load on first use, so no proxy carries them.
_LAZY = {"Mesh": "meshkit.mesh", "connect": "meshkit.mesh", "up": "meshkit.mesh",
         "LoadResult": "meshkit.traffic", "TrafficRunner": "meshkit.traffic"}

__all__ = [
    "InvalidConfig",
    "LoadResult",
    "Mesh",
    "MeshNotRunning",
    "MeshkitError",
    "NotFound",
    "TrafficRunner",
    "connect",
    "up",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'meshkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
