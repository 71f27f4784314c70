"""Durable storage of Istio resources for the local control plane (the local "etcd").

Resources are kept in creation order (Istio's tie-breaker: the oldest wins) and written atomically
and durably to ``resources.json`` in the state directory on every change, before the change is
visible: a change that cannot be stored (a full disk) raises and leaves the store as it was.

Example::

    store = ResourceStore(Path("/tmp/mesh/resources.json"))
    [(key, action)] = store.put_all([resource])   # action: "created" | "configured" | "unchanged"
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from meshkit.backends.local.durable import CorruptState, read_json, write_atomic
from meshkit.resources.kinds import key_kind

Key = tuple[str, str, str]  # kind, namespace, name


def key_of(resource: dict[str, Any]) -> Key:
    meta = resource.get("metadata", {})
    return key_kind(resource), meta.get("namespace", "tutorial"), meta["name"]


class ResourceStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: dict[Key, dict[str, Any]] = {}
        for res in read_json(path, default=[], expect=list):
            try:
                self.items[key_of(res)] = res
            except (KeyError, TypeError, AttributeError):
                raise CorruptState(path, f"an item is not a resource: {json.dumps(res)[:80]}") from None

    def put(self, resource: dict[str, Any]) -> str:
        """Create or update one resource and store the result; see :meth:`put_all`."""
        return self.put_all([resource])[0][1]

    def put_all(self, resources: list[dict[str, Any]]) -> list[tuple[Key, str]]:
        """Apply every resource, all or nothing: stored on disk first, then visible."""
        items = dict(self.items)
        results = []
        for resource in resources:
            key = key_of(resource)
            action, res = _merge(items.get(key), resource)
            if res is not None:
                items[key] = res  # dicts keep insertion order: an update keeps its creation rank
            results.append((key, action))
        if any(action != "unchanged" for _, action in results):
            self._save(items)
            self.items = items
        return results

    def delete(self, key: Key) -> dict[str, Any] | None:
        if key not in self.items:
            return None
        items = dict(self.items)
        removed = items.pop(key)
        self._save(items)
        self.items = items
        return removed

    def list(self, kind: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        return [
            r for (k, _, n), r in self.items.items() if (kind is None or k == kind) and (name is None or n == name)
        ]

    def save(self) -> None:
        self._save(self.items)

    def _save(self, items: dict[Key, dict[str, Any]]) -> None:
        write_atomic(self.path, json.dumps(list(items.values()), indent=1).encode())


def _merge(old: dict[str, Any] | None, resource: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    if old is not None and _same(old, resource):
        return "unchanged", None
    res = json.loads(json.dumps(resource))
    meta = res.setdefault("metadata", {})
    if old is None:
        meta["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        meta["generation"] = 1
    else:
        meta["creationTimestamp"] = old["metadata"].get("creationTimestamp")
        meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
    return ("created" if old is None else "configured"), res


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    strip = ("creationTimestamp", "generation")
    ma = {k: v for k, v in a.get("metadata", {}).items() if k not in strip}
    mb = {k: v for k, v in b.get("metadata", {}).items() if k not in strip}
    return bool(a.get("spec") == b.get("spec") and ma == mb and a.get("apiVersion") == b.get("apiVersion"))
