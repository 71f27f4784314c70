"""Fuzzing ``apply``'s parse and admission path (YAML text and structures): never a traceback.

Whatever the input, :func:`meshkit.mesh.load_resources` (what ``Mesh.apply`` and the CLI run before
anything reaches a backend) returns resources or raises :class:`InvalidConfig` whose every line
is a located message; time per input is bounded by hypothesis' deadline and memory by the
parser's own caps (checked with tracemalloc at the end).
"""

from __future__ import annotations

import tracemalloc
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from meshkit.errors import InvalidConfig
from meshkit.mesh import load_resources
from tests.fuzz.conftest import TRIED

# pieces of YAML that stress the parser and the admission rules, glued with random text
TOKENS = [
    "apiVersion: networking.istio.io/v1\n", "apiVersion: security.istio.io/v1\n", "kind: VirtualService\n",
    "kind: DestinationRule\n", "kind: Gateway\n", "kind: AuthorizationPolicy\n", "metadata:\n  name: r\n",
    "spec:\n", "  hosts: [r]\n", "  http:\n", "  - route:\n", "    - destination:\n", "        host: r\n",
    "  - match:\n    - headers:\n        x:\n          regex: ", "(a+)+$", "[", "]", "{", "}", ": ", "- ", "---\n",
    "&a ", "*a", "<<: *a\n", "!!float ", "!!binary ", "!!set ", "!!python/object ", "? ", "|\n", ">-\n", "\t",
    "\x00", "\x01", "\x1b", "\ufeff", "'", '"', "9" * 60, ".inf", ".nan", "~", "null", "-0x1F", "1e999",
    "2001-12-14", "\n", "  ", "#", "%YAML 1.1\n", "...\n",
]
yaml_text = st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=12)), max_size=40).map("".join)

KINDS = ["VirtualService", "DestinationRule", "Gateway", "ServiceEntry", "PeerAuthentication",
         "AuthorizationPolicy", "RequestAuthentication", "EnvoyFilter", "Telemetry", "Sidecar", "RouteRule"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=16))
trees = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=25)
known_keys = st.sampled_from(["hosts", "http", "route", "destination", "host", "subset", "match", "headers",
                              "regex", "weight", "timeout", "retries", "fault", "mirror", "subsets", "selector",
                              "servers", "rules", "action", "trafficPolicy", "mtls", "jwtRules", "tcp", "tls"])
specs = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(known_keys, st.text(max_size=6)), inner, max_size=4)),
    max_leaves=30)
resources = st.fixed_dictionaries(
    {"apiVersion": st.sampled_from(["networking.istio.io/v1", "networking.istio.io/v1alpha3",
                                    "security.istio.io/v1", "config.istio.io/v1alpha2", "v1"]),
     "kind": st.sampled_from(KINDS),
     "metadata": st.one_of(st.fixed_dictionaries({"name": st.text(max_size=20)}), trees),
     "spec": specs})


def _check(sources: list[Any]) -> None:
    try:
        load_resources(sources)
    except InvalidConfig as exc:
        assert exc.problems, "an InvalidConfig says what is wrong"
        for line in map(str, exc.problems):
            assert line.startswith(("error:", "warning:")) and len(line) < 2000, line


@settings(settings.get_profile("meshkit-fuzz"), max_examples=200)
@given(yaml_text)
def test_yaml_text_never_raises_anything_but_invalid_config(text: str) -> None:
    TRIED["apply (YAML text)"] += 1
    _check([text if "\n" in text or ":" in text else text + "\n:"])


@settings(settings.get_profile("meshkit-fuzz"), max_examples=150)
@given(st.one_of(resources, trees))
def test_resource_structures_never_raise_anything_but_invalid_config(data: Any) -> None:
    TRIED["apply (structures)"] += 1
    _check([data] if isinstance(data, dict) else [{"kind": "VirtualService", "spec": data}])


def test_fuzzing_kept_memory_bounded() -> None:
    """The worst shapes the fuzzers aim at, one more time, traced: a few MB at most."""
    bomb = "l0: &l0 [x, x, x, x, x, x, x, x]\n" + "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 8)}]\n" for i in range(1, 7))
    tracemalloc.start()
    try:
        for text in (bomb, "a: " + "[" * 3000 + "]" * 3000, "x: " + "9" * 20_000):
            _check([text])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20
