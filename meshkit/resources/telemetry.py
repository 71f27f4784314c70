"""Telemetry: the two knobs the local mesh models (trace sampling, access logs on/off).

Example::

    >>> from meshkit.resources.schema import Checker
    >>> ck = Checker()
    >>> TELEMETRY.check({"tracing": [{"randomSamplingPercentage": 150}]}, ("spec",), ck)
    >>> ck.findings[0].message
    'randomSamplingPercentage must be in range [0.0, 100.0]'
"""

from __future__ import annotations

from meshkit.resources.common import SELECTOR, TARGET_REF
from meshkit.resources.schema import Bool, ListOf, Num, Obj, Str

_HINT = ("meshkit supports tracing[].randomSamplingPercentage/providers/disableSpanReporting and "
         "accessLogging[].disabled/providers")
# providers name meshConfig extension providers (jaeger, otel...): the local mesh has one collector
_PROVIDER = Obj({"name": Str()}, unknown_hint=_HINT)


def _sampling(value: float) -> str | None:
    return None if 0 <= value <= 100 else "randomSamplingPercentage must be in range [0.0, 100.0]"


TELEMETRY = Obj(
    {
        "selector": SELECTOR,
        "targetRef": TARGET_REF,
        "targetRefs": ListOf(TARGET_REF),
        "tracing": ListOf(Obj({"randomSamplingPercentage": Num(_sampling), "providers": ListOf(_PROVIDER),
                               "disableSpanReporting": Bool()}, unknown_hint=_HINT)),
        "accessLogging": ListOf(Obj({"disabled": Bool(), "providers": ListOf(_PROVIDER)}, unknown_hint=_HINT)),
    },
    unknown_hint=_HINT,
)
