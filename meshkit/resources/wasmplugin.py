"""WasmPlugin: WebAssembly extensions for the proxy (validated and stored; not run by the local mesh).

Example::

    >>> from meshkit.resources.schema import Checker
    >>> ck = Checker()
    >>> WASM_PLUGIN.check({"url": "ftp://example.com/plugin.wasm"}, ("spec",), ck)
    >>> ck.findings[0].message
    'url must have schema one of [http, https, file, oci]'
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlparse

from meshkit.resources.authorization import one_of_selector
from meshkit.resources.common import SELECTOR, TARGET_REF
from meshkit.resources.model import Path
from meshkit.resources.schema import Checker, Enum, Int, ListOf, Loose, Obj, Str

_SHA256 = re.compile(r"^$|^[a-f0-9]{64}$")
_REFERENCE = re.compile(r"^[A-Za-z0-9._\-/:@]+$")  # an OCI image reference without a scheme


def _url_error(value: str) -> str | None:
    if not value:
        return "spec.url in body should be at least 1 chars long"
    scheme = urlparse(value).scheme if "://" in value else ""
    if scheme not in ("", "oci", "http", "https", "file") or (not scheme and not _REFERENCE.match(value)):
        return "url must have schema one of [http, https, file, oci]"
    return None


def _plugin_rule(value: dict[str, Any], path: Path, ck: Checker) -> None:
    one_of_selector(value, path, ck)
    if msg := _url_error(value.get("url", "")):
        ck.error((*path, "url"), msg)
    if not _SHA256.match(value.get("sha256", "")):
        ck.error((*path, "sha256"), "spec.sha256 in body should match '(^$|^[a-f0-9]{64}$)'")
    for key in ("imagePullSecret", "pluginName"):
        if key in value and value[key] == "":
            ck.error((*path, key), f"spec.{key} in body should be at least 1 chars long")
    names: set[str] = set()
    for i, env in enumerate((value.get("vmConfig") or {}).get("env") or []):
        where = (*path, "vmConfig", "env", i)
        name = env.get("name", "")
        if not name:
            ck.error((*where, "name"), f"spec.vmConfig.env[{i}].name in body should be at least 1 chars long")
        elif name in names:
            ck.error((*where, "name"), f'Duplicate value: map[string]interface {{}}{{"name":"{name}"}}')
        names.add(name)
        if env.get("valueFrom") == "HOST" and "value" in env:
            ck.error(where, "value may only be set when valueFrom is INLINE")
    for i, match in enumerate(value.get("match") or []):
        for j, port in enumerate(match.get("ports") or []):
            if "number" not in port:
                ck.error((*path, "match", i, "ports", j, "number"), 'required field "number" is missing')


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
