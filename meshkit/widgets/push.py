"""What a push changed in one proxy: its routes and clusters before and after an apply.

:func:`proxy_snapshot` and :func:`push_changes` are plain data (usable without a notebook);
:class:`PushDiff` shows them in a notebook: the rows that appeared, disappeared or changed in
``istioctl proxy-config routes`` and ``clusters``, and the unified diff of the Envoy route JSON.

Example::

    diff = PushDiff(mesh, "preference")
    diff.apply("cluster/istiofiles/virtual-service-recommendation-v1_and_v2.yaml")
    diff                                   # in a notebook: the tables and the JSON diff
    diff.changes["routes"]["changed"]      # the route rows that differ
"""

from __future__ import annotations

import difflib
import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

from meshkit import proxyconfig as pc

TABLES = {"routes": ("NAME", "VHOST NAME"), "clusters": ("SERVICE FQDN", "PORT", "SUBSET", "DIRECTION")}


def proxy_snapshot(mesh: Any, pod: str) -> dict[str, Any]:
    """One proxy's routes and clusters (table rows and the Envoy objects) and its config version."""
    dump = mesh.config_dump(pod)
    version = next((c.get("version_info", "") for c in dump.get("configs", [])
                    if str(c.get("@type", "")).endswith("ClustersConfigDump")), "")
    return {
        "pod": pod,
        "version": version,
        "routes": pc.route_rows(dump),
        "clusters": pc.cluster_rows(dump),
        "route_json": pc.route_resources(dump),
        "cluster_json": [c for c in pc.clusters(dump) if str(c["name"]).startswith("outbound|")],
    }


def _keyed(rows: Sequence[Mapping[str, Any]], key: Sequence[str]) -> dict[tuple[str, ...], list[Mapping[str, Any]]]:
    out: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        out.setdefault(tuple(str(row.get(k, "")) for k in key), []).append(row)
    return out


def push_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """Rows added, removed and changed per table, plus the unified diff of the routes and clusters JSON.

    Example::

        changes = push_changes(snapshot_a, snapshot_b)
        [r["SUBSET"] for r in changes["clusters"]["added"]]     # ['version-v1', 'version-v2']
    """
    result: dict[str, Any] = {"version": (before.get("version"), after.get("version"))}
    for table, key in TABLES.items():
        old, new = _keyed(before[table], key), _keyed(after[table], key)
        result[table] = {
            "added": [r for k in new if k not in old for r in new[k]],
            "removed": [r for k in old if k not in new for r in old[k]],
            "changed": [r for k in new if k in old and new[k] != old[k] for r in new[k]],
        }
    for name in ("route_json", "cluster_json"):
        a = json.dumps(pc.camel(before[name]), indent=2, sort_keys=True).splitlines()
        b = json.dumps(pc.camel(after[name]), indent=2, sort_keys=True).splitlines()
        result[name.replace("_json", "_diff")] = list(difflib.unified_diff(a, b, "before", "after", lineterm="", n=2))
    return result


def _rows_html(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], color: str, sign: str) -> str:
    cells = "".join(
        "<tr>" + f"<td style='color:{color}'>{sign}</td>"
        + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in columns) + "</tr>" for r in rows)
    return cells


def changes_html(changes: Mapping[str, Any], pod: str) -> str:
    """The changes as HTML: one small table per proxy-config type, then the JSON diff."""
    parts = [f"<b>{html.escape(pod)}</b>: config version {html.escape(str(changes['version'][0]))} → "
             f"{html.escape(str(changes['version'][1]))}"]
    for table, columns in (("routes", pc.ROUTE_COLUMNS), ("clusters", pc.CLUSTER_COLUMNS)):
        c = changes[table]
        if not (c["added"] or c["removed"] or c["changed"]):
            parts.append(f"<p>{table}: no change</p>")
            continue
        head = "<tr><th></th>" + "".join(f"<th>{html.escape(h)}</th>" for h in columns) + "</tr>"
        body = (_rows_html(c["added"], columns, "#2a7a2a", "+") + _rows_html(c["changed"], columns, "#b26a00", "~")
                + _rows_html(c["removed"], columns, "#d62728", "−"))
        parts.append(f"<p><b>proxy-config {table}</b></p><table>{head}{body}</table>")
    diff = changes["route_diff"] + changes["cluster_diff"]
    if diff:
        lines = []
        for line in diff[:400]:
            color = "#2a7a2a" if line.startswith("+") else "#d62728" if line.startswith("-") else "inherit"
            lines.append(f"<span style='color:{color}'>{html.escape(line)}</span>")
        parts.append("<details><summary>Envoy JSON diff (routes, clusters)</summary><pre>" + "\n".join(lines)
                     + "</pre></details>")
    return "".join(parts)


class PushDiff:
    """A notebook view of what the next push changes in one proxy (routes and clusters)."""

    def __init__(self, mesh: Any, pod: str) -> None:
        import ipywidgets as widgets

        self.mesh = mesh
        self.pod = next((p.name for p in mesh.pods() if p.name == pod), None) or next(
            (p.name for p in mesh.pods() if p.deployment == pod or p.app == pod), pod)
        self.before = proxy_snapshot(mesh, self.pod)
        self.after: dict[str, Any] | None = None
        self.changes: dict[str, Any] = {}
        self.output = widgets.HTML(f"<i>{html.escape(self.pod)}: waiting for a push (call .apply)</i>")

    def apply(self, *sources: Any) -> list[str]:
        """Apply resources through the mesh, then show what changed in this proxy."""
        results = [str(r) for r in self.mesh.apply(*sources)]
        self.refresh()
        return results

    def refresh(self) -> dict[str, Any]:
        """Compare the proxy now with the last snapshot (and make now the new 'before')."""
        self.after = proxy_snapshot(self.mesh, self.pod)
        self.changes = push_changes(self.before, self.after)
        self.output.value = changes_html(self.changes, self.pod)
        self.before = self.after
        return self.changes

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.output)
