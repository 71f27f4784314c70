"""WasmPlugin: WebAssembly extensions for the proxy (validated and stored; not run by the local mesh).

Example::

    >>> from meshkit.resources.schema import Checker
    >>> ck = Checker()
    >>> WASM_PLUGIN.check({"url": "ftp://example.com/plugin.wasm"}, ("spec",), ck)
    >>> ck.findings[0].message
    'url scheme ftp is not supported'
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from meshkit.resources.authorization import one_of_selector
from meshkit.resources.common import SELECTOR, TARGET_REF
from meshkit.resources.model import Path
from meshkit.resources.schema import Checker, Enum, Int, ListOf, Loose, Obj, Str


def _url_error(value: str) -> str | None:
    if not value:
        return "url field needs to be set"
    scheme = urlparse(value).scheme if "://" in value else "oci"
    if scheme not in ("oci", "http", "https", "file"):
        return f"url scheme {scheme} is not supported"
    return None


def _plugin_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    one_of_selector(value, path, ck)
    if msg := _url_error(value.get("url", "")):
        ck.error((*path, "url"), msg)
    if value.get("imagePullSecret") and "/" in value["imagePullSecret"]:
        ck.error((*path, "imagePullSecret"), "imagePullSecret must not contain '/'")


WASM_PLUGIN = Obj(
    {
        "selector": SELECTOR,
        "targetRef": TARGET_REF,
        "targetRefs": ListOf(TARGET_REF),
        "url": Str(),
        "sha256": Str(),
        "imagePullPolicy": Enum("UNSPECIFIED_POLICY", "IfNotPresent", "Always"),
        "imagePullSecret": Str(),
        "pluginConfig": Loose(),
        "pluginName": Str(),
        "phase": Enum("UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS"),
        "priority": Int(),
        "failStrategy": Enum("FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"),
        "vmConfig": Obj({"env": ListOf(Obj({"name": Str(), "value": Str(), "valueFrom": Enum("INLINE", "HOST")}))}),
        "match": ListOf(
            Obj({"mode": Enum("UNDEFINED", "CLIENT", "SERVER", "CLIENT_AND_SERVER"), "ports": Loose(mapping=False)})
        ),
        "type": Enum("UNSPECIFIED_PLUGIN_TYPE", "HTTP", "NETWORK"),
    },
    required=("url",),
    rules=[_plugin_rule],
)
