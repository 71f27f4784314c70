"""Durable storage of Istio resources for the local control plane (the local "etcd").

Resources are kept in creation order (Istio's tie-breaker: the oldest wins) and written atomically
to ``resources.json`` in the state directory on every change, so a restart loses nothing.

Example::

    store = ResourceStore(Path("/tmp/mesh/resources.json"))
    action = store.put(resource)   # "created" | "configured" | "unchanged"
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

Key = tuple[str, str, str]  # kind, namespace, name


def key_of(resource: dict[str, Any]) -> Key:
    meta = resource.get("metadata", {})
    return resource["kind"], meta.get("namespace", "tutorial"), meta["name"]


class ResourceStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: dict[Key, dict[str, Any]] = {}
        if path.exists():
            for res in json.loads(path.read_text()):
                self.items[key_of(res)] = res

    def put(self, resource: dict[str, Any]) -> str:
        key = key_of(resource)
        old = self.items.get(key)
        if old is not None and _same(old, resource):
            return "unchanged"
        res = json.loads(json.dumps(resource))
        meta = res.setdefault("metadata", {})
        if old is None:
            meta["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            meta["generation"] = 1
        else:
            meta["creationTimestamp"] = old["metadata"].get("creationTimestamp")
            meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
        self.items[key] = res  # dicts keep insertion order: an update keeps its creation rank
        return "created" if old is None else "configured"

    def delete(self, key: Key) -> dict[str, Any] | None:
        return self.items.pop(key, None)

    def list(self, kind: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        return [
            r for (k, _, n), r in self.items.items() if (kind is None or k == kind) and (name is None or n == name)
        ]

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(list(self.items.values()), indent=1))
        os.replace(tmp, self.path)


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    strip = ("creationTimestamp", "generation")
    ma = {k: v for k, v in a.get("metadata", {}).items() if k not in strip}
    mb = {k: v for k, v in b.get("metadata", {}).items() if k not in strip}
    return bool(a.get("spec") == b.get("spec") and ma == mb and a.get("apiVersion") == b.get("apiVersion"))
