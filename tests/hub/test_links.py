"""Browser links from JUPYTERHUB_SERVICE_PREFIX, and the server-proxy entries loaded by jupyter-server-proxy's
own configuration code (its ``ServerProcess`` traits and handler factory), no server needed."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from meshkit import serverproxy
from meshkit.serverproxy import addon_base_paths, links, proxied_path, proxied_url, service_prefix

REPO = Path(__file__).resolve().parents[2]
ENTRY_GROUP = "jupyter_serverproxy_servers"


def declared_entry_points() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return dict(project["entry-points"][ENTRY_GROUP])


def load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


# -- the URL helper ----------------------------------------------------------------------------------------
HUB = {"JUPYTERHUB_SERVICE_PREFIX": "/user/alice/"}


def test_hub_prefix_makes_the_path() -> None:
    assert proxied_path("mesh-dashboard", env=HUB) == "/user/alice/mesh-dashboard/"
    assert proxied_path("mesh-dashboard", "api/graph", env=HUB) == "/user/alice/mesh-dashboard/api/graph"
    assert proxied_path("jaeger", env=HUB) == "/user/alice/jaeger/search"
    # a named server and a prefix without its trailing slash
    assert proxied_path("kiali", env={"JUPYTERHUB_SERVICE_PREFIX": "/user/bob/lab2"}) == "/user/bob/lab2/kiali/"


def test_public_url_or_host_makes_it_absolute() -> None:
    env = dict(HUB, JUPYTERHUB_PUBLIC_URL="https://hub.example.org/user/alice/")
    assert proxied_url("mesh-dashboard", env=env) == "https://hub.example.org/user/alice/mesh-dashboard/"
    env = dict(HUB, JUPYTERHUB_HOST="https://hub.example.org")
    assert proxied_url("prometheus", env=env) == "https://hub.example.org/user/alice/prometheus/"
    # Binder: the hub says no public address (BINDER_LAUNCH_HOST is the launcher's, not the session's host)
    binder = {"JUPYTERHUB_SERVICE_PREFIX": "/user/org-repo-abc123/", "BINDER_LAUNCH_HOST": "https://mybinder.org/"}
    assert proxied_url("mesh-dashboard", env=binder) == "/user/org-repo-abc123/mesh-dashboard/"


def test_without_a_hub_the_local_server_or_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub variable: the one running Jupyter server's URL (read from its jpserver-*.json), else ``/``."""
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    assert (service_prefix({}), proxied_url("mesh-dashboard", env={})) == ("/", "/mesh-dashboard/")
    # a running server's info file, as jupyter_server writes it (its pid must be alive: ours)
    info = {"base_url": "/lab-root/", "url": "http://127.0.0.1:8899/lab-root/", "pid": os.getpid(), "port": 8899}
    (tmp_path / f"jpserver-{os.getpid()}.json").write_text(json.dumps(info))
    assert service_prefix({}) == "/lab-root/"
    assert proxied_url("mesh-dashboard", env={}) == "http://127.0.0.1:8899/lab-root/mesh-dashboard/"
    # a dead server's file is ignored; two live ones are ambiguous: the path alone
    (tmp_path / "jpserver-999999999.json").write_text(json.dumps(dict(info, pid=999_999_999)))
    assert service_prefix({}) == "/lab-root/"
    other = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / f"jpserver-{other.pid}.json").write_text(json.dumps(dict(info, pid=other.pid, base_url="/x/")))
        assert proxied_url("mesh-dashboard", env={}) == "/mesh-dashboard/"
    finally:
        other.kill()
        other.wait()


def test_links_per_backend_and_the_addons_base_paths() -> None:
    assert links("local", env=HUB) == {"Mesh dashboard": "/user/alice/mesh-dashboard/"}
    assert links("kind", env=HUB) == {"Kiali": "/user/alice/kiali/", "Jaeger": "/user/alice/jaeger/search",
                                      "Prometheus": "/user/alice/prometheus/"}
    assert addon_base_paths({"JUPYTERHUB_SERVICE_PREFIX": "/"}) == {"kiali": "/kiali", "jaeger": "/jaeger",
                                                                     "prometheus": "/"}
    assert addon_base_paths(HUB)["jaeger"] == "/user/alice/jaeger"
    with pytest.raises(ValueError, match="one path segment"):
        proxied_path("a/b")


def test_print_url_from_the_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                tmp_path: Path) -> None:
    from meshkit.cli import main

    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/carol/")
    for name in ("JUPYTERHUB_HOST", "JUPYTERHUB_PUBLIC_URL", "MESHKIT_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MESHKIT_HOME", str(tmp_path))
    assert main(["dashboard", "--print-url"]) == 0
    assert capsys.readouterr().out == "/user/carol/mesh-dashboard/\n"
    assert main(["--backend", "kind", "dashboard", "--print-url"]) == 0
    assert capsys.readouterr().out == ("Kiali: /user/carol/kiali/\nJaeger: /user/carol/jaeger/search\n"
                                       "Prometheus: /user/carol/prometheus/\n")
    # a bad option is one line, no traceback
    assert main(["dashboard", "--port", "70000"]) == 1
    assert capsys.readouterr().err == "error: dashboard: --port 70000: must be 0-65535 (0: a free port)\n"


# -- the entries, through jupyter-server-proxy's own loader ----------------------------------------------------
def test_pyproject_declares_the_four_entries_and_pins_jupyter_server_proxy() -> None:
    assert declared_entry_points() == {"mesh-dashboard": "meshkit.serverproxy:dashboard",
                                       "kiali": "meshkit.serverproxy:kiali", "jaeger": "meshkit.serverproxy:jaeger",
                                       "prometheus": "meshkit.serverproxy:prometheus"}
    lab = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["lab"]
    assert "jupyter-server-proxy==4.6.0" in lab


def test_jupyter_server_proxy_builds_each_entry() -> None:
    """Each declared entry point becomes a ServerProcess (as get_entrypoint_server_processes does) and a
    supervise-and-proxy handler whose rendered command is what the launcher will run."""
    import jupyter_server_proxy.config as jsp_config
    from jupyter_server_proxy.handlers import SuperviseAndProxyHandler

    processes = {name: jsp_config.make_server_process(name, load(target)(), None)
                 for name, target in declared_entry_points().items()}
    dash = processes["mesh-dashboard"]
    assert dash.unix_socket is True and dash.absolute_url is False and dash.new_browser_tab is False
    assert dash.launcher_entry.title == "Mesh dashboard" and dash.launcher_entry.path_info == "mesh-dashboard/"
    assert dash.command[-2:] == ["--unix-socket", "{unix_socket}"]
    for name, title, path in (("kiali", "Kiali", "kiali/"), ("jaeger", "Jaeger", "jaeger/search"),
                              ("prometheus", "Prometheus", "prometheus/")):
        proc = processes[name]
        assert (proc.launcher_entry.title, proc.launcher_entry.path_info) == (title, path)
        assert proc.absolute_url is (name != "prometheus")  # Kiali and Jaeger keep their own base path
        assert proc.command[:2] == ["kubectl", "--context"] and "127.0.0.1" in proc.command
        assert proc.command[-1].startswith("{port}:")
    for proc in processes.values():
        icon = Path(proc.launcher_entry.icon_path)
        assert icon.suffix == ".svg" and icon.read_text().lstrip().startswith("<svg")
        assert proc.launcher_entry.category == "meshkit"
        handler, kwargs = proc.make_proxy_handler()
        assert handler is not None and issubclass(handler, SuperviseAndProxyHandler) and kwargs == {"state": {}}
    handlers = jsp_config.make_handlers("/user/alice/", list(processes.values()))
    assert [h[0] for h in handlers][:2] == ["/user/alice/mesh-dashboard/(.*)", "/user/alice/mesh-dashboard"]


def test_kind_entries_name_the_hub_context_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHKIT_CONTEXT", "workshop")
    cmd = serverproxy.kiali()["command"]
    assert cmd[:3] == ["kubectl", "--context", "workshop"]
    assert cmd[-2:] == ["svc/kiali", "{port}:20001"]
    monkeypatch.delenv("MESHKIT_CONTEXT")
    assert serverproxy.jaeger()["command"][2] == "kind-meshkit"
    assert set(serverproxy.servers()) == set(declared_entry_points())


def test_links_for_a_notebook_cell_are_escaped(tmp_path: Path) -> None:
    from meshkit.backends.base import get_backend
    from meshkit.mesh import Mesh
    from meshkit.serverproxy import Links

    mesh = Mesh(get_backend("local")(home=str(tmp_path)))
    shown = Links(mesh, env={"JUPYTERHUB_SERVICE_PREFIX": '/user/a"<b>/'})
    assert repr(shown) == 'Mesh dashboard: /user/a"<b>/mesh-dashboard/'
    html = shown._repr_html_()
    assert 'href="/user/a&quot;&lt;b&gt;/mesh-dashboard/"' in html and "<b>" not in html
