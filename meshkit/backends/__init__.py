"""Backends run the mesh: ``local`` (embedded, default), ``kind`` (real Istio in kind) and ``kube``
(an existing cluster). They are looked up by name and imported lazily, so the local backend never
needs the kubernetes client installed.
"""

from meshkit.backends.base import Backend, get_backend, registered_backends

__all__ = ["Backend", "get_backend", "registered_backends"]
