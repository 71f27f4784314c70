"""Suite-wide settings.

``MESHKIT_SEED`` makes every proxy of every mesh the tests start draw reproducibly (load balancing,
weighted routes, faults: see ``meshkit/backends/local/proxy/seeding.py``), so a statistical test sees
the same sample on every run; its tolerance still has to hold for any seed (each states its binomial
standard deviations). Run with ``MESHKIT_SEED=<other>`` to try another sample.
"""

from __future__ import annotations

import os

os.environ.setdefault("MESHKIT_SEED", "meshkit-suite-1")


def pytest_sessionfinish(session: object, exitstatus: int) -> None:
    """Close the figures' widgets while ipywidgets still has its module state.

    Widgets the tests left alive are otherwise closed by their ``__del__`` during interpreter shutdown,
    after ipywidgets' globals are gone, and each prints an ignored ``AttributeError`` traceback.
    """
    import sys

    widgets = sys.modules.get("ipywidgets")
    if widgets is not None:
        widgets.Widget.close_all()
