"""Launcher entries for jupyter-server-proxy, and the browser links that reach them on a hub, Binder or a laptop.

jupyter-server-proxy starts a named process the first time its URL is opened and proxies
``<Jupyter base URL><name>/`` to it. meshkit declares four (the ``jupyter_serverproxy_servers`` entry
points in ``pyproject.toml``):

* ``mesh-dashboard`` -- ``meshkit dashboard`` on a Unix socket in a fresh 0700 directory: no TCP
  port, so on a shared host (every learner on one loopback) nobody else can connect to it;
* ``kiali``, ``jaeger``, ``prometheus`` -- ``kubectl port-forward`` to the kind backend's addons on a
  free loopback port chosen by jupyter-server-proxy (``{port}``).

Links are built from ``JUPYTERHUB_SERVICE_PREFIX`` (set by JupyterHub for every single-user server,
mybinder.org included), so the same notebook cell links right on a hub, on Binder and locally.

Example::

    >>> proxied_path("mesh-dashboard", env={"JUPYTERHUB_SERVICE_PREFIX": "/user/alice/"})
    '/user/alice/mesh-dashboard/'
    >>> proxied_path("jaeger", env={"JUPYTERHUB_SERVICE_PREFIX": "/user/alice/"})
    '/user/alice/jaeger/search'
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DASHBOARD = "mesh-dashboard"
ICONS = Path(__file__).resolve().parent / "icons"
CATEGORY = "meshkit"
KIND_CONTEXT = "kind-meshkit"


@dataclass(frozen=True)
class Addon:
    """One kind addon reached through ``kubectl port-forward``.

    ``base`` is the path the addon serves its UI under in Istio's samples/addons manifests: Kiali's
    ``server.web_root`` is ``/kiali``, Jaeger's ``jaeger_query`` extension has ``base_path: /jaeger``,
    Prometheus serves from ``/``. For the two with a base path the server-proxy entry has the same name and
    keeps the path it received (``absolute_url``): the browser's ``<Jupyter base URL>kiali/`` reaches
    Kiali as ``<Jupyter base URL>kiali/``, which is Kiali's own ``/kiali/`` when Jupyter is served
    from ``/``; under a hub prefix see :func:`addon_base_paths`. Prometheus gets the path with the
    prefix stripped (its redirects are rewritten by the proxy).
    """

    name: str
    title: str
    service: str
    target_port: int
    base: str
    landing: str


ADDONS = (
    Addon("kiali", "Kiali", "svc/kiali", 20001, "/kiali", ""),
    Addon("jaeger", "Jaeger", "svc/tracing", 80, "/jaeger", "search"),
    Addon("prometheus", "Prometheus", "svc/prometheus", 9090, "/", ""),
)


def service_prefix(env: Mapping[str, str] | None = None) -> str:
    """The path under which this Jupyter server is served: ``/user/NAME/`` on a hub or Binder, ``/`` locally.

    JupyterHub sets ``JUPYTERHUB_SERVICE_PREFIX`` for every single-user server it spawns (mybinder.org
    is a JupyterHub too). Without it, a local server's ``base_url`` is used when exactly one server of
    this user is running, else ``/``.

    >>> service_prefix({"JUPYTERHUB_SERVICE_PREFIX": "/user/bob"})
    '/user/bob/'
    """
    env = os.environ if env is None else env
    prefix = env.get("JUPYTERHUB_SERVICE_PREFIX", "").strip()
    if not prefix:
        local = _local_server()
        prefix = str(local.get("base_url", "/")) if local else "/"
    if not prefix.startswith("/"):
        prefix = "/" + prefix
    return prefix if prefix.endswith("/") else prefix + "/"


def proxied_path(name: str, path: str = "", env: Mapping[str, str] | None = None) -> str:
    """The browser path of a server-proxy entry (``name``) plus ``path``, from the server's prefix.

    An addon's landing page is added when ``path`` is empty (``jaeger`` → ``<prefix>jaeger/search``).
    The path is origin-relative, so a link in a notebook works wherever the notebook is open.

    >>> proxied_path("kiali", env={"JUPYTERHUB_SERVICE_PREFIX": "/user/a/"})
    '/user/a/kiali/'
    """
    if not name or "/" in name:
        raise ValueError(f"a server-proxy name is one path segment, got {name!r}")
    if not path:
        path = next((a.landing for a in ADDONS if a.name == name), "")
    return f"{service_prefix(env)}{name}/{path.lstrip('/')}"


def proxied_url(name: str, path: str = "", env: Mapping[str, str] | None = None) -> str:
    """The full browser URL when the public address is known, else :func:`proxied_path`.

    On a hub: ``JUPYTERHUB_PUBLIC_URL`` (the server's public URL, when the hub's ``public_url`` is
    set) or ``JUPYTERHUB_HOST`` + the prefix. On Binder neither is usually set (the session lives on
    a federation member's host, not ``BINDER_LAUNCH_HOST``), so the origin-relative path is returned:
    it opens from the notebook's own page. Locally: the running Jupyter server's URL.

    >>> proxied_url("mesh-dashboard", env={"JUPYTERHUB_SERVICE_PREFIX": "/user/a/",
    ...                                    "JUPYTERHUB_HOST": "https://hub.example.org"})
    'https://hub.example.org/user/a/mesh-dashboard/'
    """
    env = os.environ if env is None else env
    rel = proxied_path(name, path, env)
    prefix = service_prefix(env)
    public = env.get("JUPYTERHUB_PUBLIC_URL", "").strip()
    if public and urlsplit(public).scheme in ("http", "https"):
        base = urlsplit(public)
        return f"{base.scheme}://{base.netloc}{rel}"
    host = env.get("JUPYTERHUB_HOST", "").strip().rstrip("/")
    if host and urlsplit(host).scheme in ("http", "https"):
        return host + rel
    if env.get("JUPYTERHUB_SERVICE_PREFIX"):
        return rel  # a hub (or Binder) that did not say its public address: same-origin path
    local = _local_server()
    if local and local.get("url"):
        root = str(local["url"]).rstrip("/")
        origin = root[: len(root) - len(prefix.rstrip("/"))] if prefix != "/" and root.endswith(prefix.rstrip("/")) \
            else root
        return origin + rel
    return rel


def _local_server() -> dict[str, Any] | None:
    """The one running Jupyter server of this user, from its ``jpserver-PID.json`` in the runtime directory
    (what ``jupyter server list`` reads; a file whose process is gone is ignored)."""
    try:
        from jupyter_core.paths import jupyter_runtime_dir
    except ImportError:
        return None
    found = []
    for info_file in Path(jupyter_runtime_dir()).glob("jpserver-*.json"):
        try:
            info = json.loads(info_file.read_text())
            os.kill(int(info["pid"]), 0)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(info, dict):
            found.append(info)
    return found[0] if len(found) == 1 else None


def addon_base_paths(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """What each addon's own base path must be for its proxied UI to load under this server's prefix.

    With Jupyter at ``/`` (a laptop, Codespaces: where the kind backend runs) these are the
    addons' defaults. Under a hub prefix Kiali's ``server.web_root`` and Jaeger's
    ``jaeger_query.base_path`` must be changed to these values, as their pages link their scripts
    under their own base path.

    >>> addon_base_paths({"JUPYTERHUB_SERVICE_PREFIX": "/user/a/"})["kiali"]
    '/user/a/kiali'
    """
    prefix = service_prefix(env)
    return {a.name: f"{prefix}{a.name}" if a.base != "/" else "/" for a in ADDONS}


# -- the entry points jupyter-server-proxy loads ---------------------------------------------------------------
def dashboard() -> dict[str, Any]:
    """The ``mesh-dashboard`` server: ``meshkit dashboard`` on a Unix socket jupyter-server-proxy makes.

    ``unix_socket: True`` has jupyter-server-proxy create a new directory with ``mkdtemp`` (mode
    0700) and pass ``{unix_socket}`` inside it; the dashboard refuses a socket whose directory
    others can enter. The dashboard's links are relative, so the proxy strips its prefix.
    """
    return {
        "command": [sys.executable, "-m", "meshkit.cli", "dashboard", "--unix-socket", "{unix_socket}"],
        "unix_socket": True,
        "timeout": 90,  # a busy classroom server: the first start may take a while; any answer ends the wait
        "absolute_url": False,
        "new_browser_tab": False,
        "launcher_entry": {"title": "Mesh dashboard", "icon_path": str(ICONS / "mesh-dashboard.svg"),
                           "category": CATEGORY},
    }


def _addon(addon: Addon) -> dict[str, Any]:
    context = os.environ.get("MESHKIT_CONTEXT") or KIND_CONTEXT
    kubectl = shutil.which("kubectl")
    return {
        # kubectl port-forward listens on TCP: --address 127.0.0.1 keeps it on loopback, where other
        # users of a shared host can reach it too (docs/hub.md says what that means)
        "command": ["kubectl", "--context", context, "--namespace", "istio-system", "port-forward",
                    "--address", "127.0.0.1", addon.service, f"{{port}}:{addon.target_port}"],
        "timeout": 90,  # a busy classroom server: the first start may take a while; any answer ends the wait
        "absolute_url": addon.base != "/",
        "new_browser_tab": True,
        "launcher_entry": {"title": addon.title, "icon_path": str(ICONS / f"{addon.name}.svg"),
                           "category": CATEGORY, "path_info": f"{addon.name}/{addon.landing}",
                           # an icon that cannot work is left out: no kubectl, no kind cluster
                           "enabled": kubectl is not None},
    }


def kiali() -> dict[str, Any]:
    """The ``kiali`` server: ``kubectl port-forward svc/kiali`` in ``istio-system`` of the kind cluster."""
    return _addon(ADDONS[0])


def jaeger() -> dict[str, Any]:
    """The ``jaeger`` server: ``kubectl port-forward svc/tracing`` (Jaeger's query UI)."""
    return _addon(ADDONS[1])


def prometheus() -> dict[str, Any]:
    """The ``prometheus`` server: ``kubectl port-forward svc/prometheus``."""
    return _addon(ADDONS[2])


def servers() -> dict[str, dict[str, Any]]:
    """All four, for ``c.ServerProxy.servers`` in a ``jupyter_server_config.py`` (when meshkit is not
    pip-installed, so its entry points are not seen).

    Example::

        from meshkit.serverproxy import servers
        c.ServerProxy.servers = servers()
    """
    return {DASHBOARD: dashboard(), "kiali": kiali(), "jaeger": jaeger(), "prometheus": prometheus()}


def links(backend: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Title → browser link of the views that exist for ``backend`` (the dashboard for ``local``).

    >>> links("local", env={"JUPYTERHUB_SERVICE_PREFIX": "/user/a/"})
    {'Mesh dashboard': '/user/a/mesh-dashboard/'}
    """
    if backend == "local":
        return {"Mesh dashboard": proxied_url(DASHBOARD, env=env)}
    return {a.title: proxied_url(a.name, env=env) for a in ADDONS}


class Links:
    """The browser views of a mesh as links, for a notebook cell (HTML, escaped) or a terminal (text).

    Example::

        Links(mesh)          # in lab 04: "Mesh dashboard" on the local backend; Kiali, Jaeger, Prometheus on kind
    """

    def __init__(self, mesh: Any, env: Mapping[str, str] | None = None) -> None:
        self.links = links(str(getattr(mesh.backend, "name", "local")), env)

    def __repr__(self) -> str:
        return "\n".join(f"{title}: {url}" for title, url in self.links.items())

    def _repr_html_(self) -> str:
        from html import escape

        items = "".join(f'<li><a href="{escape(url)}" target="_blank" rel="noopener">{escape(title)}</a> '
                        f"<code>{escape(url)}</code></li>" for title, url in self.links.items())
        return f"<ul>{items}</ul>"
