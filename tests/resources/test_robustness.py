"""Malformed input never escapes as a traceback: every document yields problems or a resource."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import yaml

from meshkit.resources import Document, analyze, validate_documents
from tests.resources.helpers import errors

DATA = Path(__file__).parent / "data"
ODD_VALUES: list[Any] = [
    None,
    "",
    "ten",
    -7,
    0,
    10**30,
    1.5,
    float("nan"),
    True,
    [],
    [None],
    {},
    {"x": 1},
    [{"a": "b"}],
    "1.5ms",
    "*",
    "(",
    {1: 2},
]


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, (*prefix, i))
    return out


def mutate(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    data = copy.deepcopy(data)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


def test_seeded_mutations_of_every_fixture_never_raise() -> None:
    rng = random.Random(20240917)
    originals = [d for p in sorted(DATA.iterdir()) for d in yaml.safe_load_all(p.read_text())]
    checked = 0
    for original in originals:
        for path in paths(original):
            for value in rng.sample(ODD_VALUES, 4):
                data = mutate(original, path, value)
                report = validate_documents([Document("fuzz.yaml", 0, data)])
                assert report.errors or report.resources
                for problem in report.errors + report.warnings:
                    assert problem.format().startswith(("error: fuzz.yaml", "warning: fuzz.yaml", "info: fuzz.yaml"))
                analyze([data], {"recommendation": {"http": 8080}}, [])
                checked += 1
    assert checked > 1000


def test_numbers_that_are_not_finite_are_refused() -> None:
    text = yaml.safe_dump(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "r"},
            "spec": {
                "hosts": ["r"],
                "http": [
                    {
                        "route": [{"destination": {"host": "r"}}],
                        "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 1e400}}},
                    }
                ],
            },
        }
    )
    assert errors(text) == [("spec.http[0].fault.abort.percentage.value", "expected a finite number, got inf")]


def test_deleting_any_field_never_raises() -> None:
    originals = [d for p in sorted(DATA.iterdir()) for d in yaml.safe_load_all(p.read_text())]
    for original in originals:
        for path in paths(original):
            data = copy.deepcopy(original)
            node = data
            for key in path[:-1]:
                node = node[key]
            del node[path[-1]]
            report = validate_documents([Document("fuzz.yaml", 0, data)])
            assert report.errors or report.resources
            analyze(report.resources, {}, [], origins=report.origins)


def test_truncated_yaml_text_never_raises() -> None:
    from meshkit.resources import parse_text

    rng = random.Random(7)
    for path in sorted(DATA.iterdir()):
        text = path.read_text()
        for _ in range(15):
            cut = text[: rng.randrange(len(text))] + rng.choice(["", ":", "- [", "'", "\t", "  x: {"])
            report = validate_documents(parse_text(cut, path.name))
            for problem in report.errors:
                assert problem.source == path.name and problem.message
