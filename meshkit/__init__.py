"""meshkit: a hands-on lab for the Istio service mesh.

Example::

    import meshkit
    mesh = meshkit.up()                 # local mesh on 127.0.0.1, or up(backend="kind")
    print(mesh.curl())                  # (200, "customer => preference => recommendation v1 from ...")
"""

from meshkit.errors import InvalidConfig, MeshkitError, MeshNotRunning, NotFound
from meshkit.mesh import Mesh, connect, up
from meshkit.traffic import LoadResult, TrafficRunner

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
