"""Without the lab extra, meshkit, meshkit.viz and the builders import; figures say what to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys

    class NoLabExtra:  # behave as if plotly, ipywidgets and anywidget were not installed
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("plotly", "ipywidgets", "anywidget"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    sys.meta_path.insert(0, NoLabExtra())
    import meshkit, meshkit.viz, meshkit.widgets
    print(meshkit.widgets.to_yaml(meshkit.widgets.mtls_rule("STRICT")).splitlines()[1])
    for module, name in ((meshkit.viz, "split_over_time"), (meshkit.widgets, "weights_panel")):
        try:
            getattr(module, name)
        except meshkit.MeshkitError as exc:
            print(type(exc).__name__, exc)
    print(sorted(m for m in sys.modules if m.split(".")[0] in ("plotly", "ipywidgets")))
    """
)


def test_core_imports_without_plotly_and_figures_name_the_extra() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout.splitlines()
    assert out == [
        "kind: PeerAuthentication",
        "BackendUnavailable meshkit.viz needs 'plotly', part of the lab extra: pip install 'meshkit[lab]'",
        "BackendUnavailable meshkit.widgets panels need 'ipywidgets', part of the lab extra: "
        "pip install 'meshkit[lab]'",
        "[]",
    ]
