"""One set of colours for every figure, so v2 is orange in the split, the latency plot and the graph.

Example::

    version_color("v2")          # '#ff7f0e'
    code_color("503 UO")         # '#d62728'
"""

from __future__ import annotations

#: recommendation versions (and any app version): v1 blue, v2 orange, v3 bluish green — the
#: Okabe–Ito colours, which stay apart for the common colour-vision deficiencies; every figure also
#: gives each version a pattern or a marker symbol (VERSION_PATTERNS, VERSION_SYMBOLS)
VERSION_COLORS: dict[str, str] = {
    "v1": "#0072B2",
    "v2": "#E69F00",
    "v3": "#009E73",
    "v4": "#CC79A7",
    "v5": "#56B4E9",
}
#: requests that got no version back (an error answered before recommendation)
NO_VERSION_COLOR = "#7f7f7f"
NO_VERSION_LABEL = "no version (error)"

ERROR_RED = "#d62728"
OK_GREY = "#9a9a9a"

#: status code + flag series; 503 variants differ so UO, FI and the app's own 503 stay apart
CODE_COLORS: dict[str, str] = {
    "200": "#2ca02c",
    "503": "#e377c2",
    "503 UO": ERROR_RED,
    "503 FI": "#9467bd",
    "503 UH": "#8c564b",
    "503 UF": "#ff9896",
    "503 NC": "#c49c94",
    "503 URX": "#f7b6d2",
    "504 UT": "#ff7f0e",
    "500": "#a0522d",
    "403": "#bcbd22",
    "401": "#dbdb8d",
    "404 NR": "#7f7f7f",
    "429 RL": "#17becf",
    "no response": "#000000",
}
_FALLBACK = ["#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354"]

#: services in traces (not versions, so none of the version colours and never red)
SERVICE_COLORS: dict[str, str] = {
    "istio-ingressgateway": "#5b6c8f",
    "customer": "#17becf",
    "preference": "#9467bd",
    "recommendation": "#bcbd22",
}


def version_color(version: str) -> str:
    """Colour of an app version; unknown versions get a stable fallback, '' the error grey."""
    if not version:
        return NO_VERSION_COLOR
    if version in VERSION_COLORS:
        return VERSION_COLORS[version]
    return _stable(version)


#: a fill pattern per version, so versions differ without colour too (bars, histograms)
VERSION_PATTERNS: dict[str, str] = {"v1": "", "v2": "/", "v3": "x", "v4": ".", "v5": "+"}
#: a marker symbol per version (lines and scatter points)
VERSION_SYMBOLS: dict[str, str] = {"v1": "circle", "v2": "diamond", "v3": "square", "v4": "triangle-up",
                                   "v5": "cross"}


def version_pattern(version: str) -> str:
    """Fill pattern of a version's bars ('' is solid); errors without a version are dotted."""
    return VERSION_PATTERNS.get(version, "." if not version else "-")


def version_symbol(version: str) -> str:
    """Marker symbol of a version; errors without a version are an x."""
    return VERSION_SYMBOLS.get(version, "x" if not version else "star")


def code_pattern(label: str) -> str:
    """Fill pattern of a status series: successes solid, 4xx crossed, 5xx hatched, no answer dotted."""
    code = label.split(" ", 1)[0]
    return {"2": "", "3": "", "4": "x", "5": "/"}.get(code[:1], ".")


def code_color(label: str) -> str:
    """Colour of a code series label from :func:`meshkit.viz.data.code_label`."""
    if label in CODE_COLORS:
        return CODE_COLORS[label]
    code = label.split(" ", 1)[0]
    if code.startswith("2") and label == code:
        return CODE_COLORS["200"]
    return _stable(label)


def service_color(service: str) -> str:
    """Colour of a service name (``customer`` or ``customer.tutorial``)."""
    short = service.split(".", 1)[0]
    return SERVICE_COLORS.get(short) or _stable(short)


def _stable(key: str) -> str:
    # a deterministic pick (not hash(), which is salted per process) so reruns keep colours
    return _FALLBACK[sum(key.encode()) % len(_FALLBACK)]
