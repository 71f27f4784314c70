"""Hostile YAML: every input ends as one located problem, in bounded time and memory, never a traceback.

The cases are the ones a co-tenant or a careless paste produces: control characters, a tag that
cannot construct its value, integers too long for a number, nesting thousands of levels deep, the
billion-laughs alias bomb, an object larger than Kubernetes stores, and a file far beyond that.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from meshkit.errors import InvalidConfig
from meshkit.mesh import load_resources
from meshkit.resources import load_paths, parse_text, validate_documents
from meshkit.resources.loader import MAX_SOURCE_BYTES
from meshkit.resources.validation import MAX_OBJECT_BYTES

HEAD = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: r\nspec:\n"


def _laughs(levels: int = 9) -> str:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels + 1):
        ref = f"*l{i - 1}"
        lines.append(f"l{i}: &l{i} [{', '.join([ref] * 10)}]")
    return "\n".join(lines) + "\n"


CASES = {
    "control character": (HEAD + "  hosts: [\"a\x01b\"]\n",
                          "unacceptable character #x0001: control characters are not allowed"),
    "NUL byte": ("kind: Virtual\x00Service\n", "unacceptable character #x0000"),
    "!!float .infx": (HEAD + "  hosts: !!float .infx\n", "cannot decode '.infx' as float"),
    "5,000-digit integer": (HEAD + "  hosts: [r]\n  http:\n  - route: [{destination: {host: r}, weight: "
                            + "9" * 5000 + "}]\n",
                            "expected integer, got string \"999"),
    "5,000 nested brackets": ("a: " + "[" * 5000 + "]" * 5000 + "\n", "exceeded maximum nesting depth"),
    "5,000 nested braces": ("a: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", "exceeded maximum nesting depth"),
    "billion laughs": (_laughs(), "document contains excessive aliasing"),
    "alias as a key": ("a: &a [1, 2]\n? *a\n: 3\n", "found unhashable key"),
    "lone surrogate": ("kind: \ud800\n", "the text is not valid Unicode"),
    "!!set": ("kind: !!set {a, b}\n", "could not determine a constructor for the tag"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_hostile_input_is_one_located_error(name: str) -> None:
    text, expected = CASES[name]
    started = time.perf_counter()
    report = validate_documents(parse_text(text, "hostile.yaml"))
    elapsed = time.perf_counter() - started
    tracemalloc.start()  # a second run, traced (tracing slows it down too much to time it)
    try:
        validate_documents(parse_text(text, "hostile.yaml"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(report.errors) == 1, [p.format() for p in report.errors]
    problem = report.errors[0]
    assert problem.source == "hostile.yaml" and problem.line is not None
    assert expected in problem.message
    assert len(problem.format()) < 400  # no 5,000-digit echo
    assert elapsed < 5.0  # a hang guard: each case takes well under a second
    assert peak < 64 * 2**20  # bytes allocated while reading, whatever the alias expansion would need


def test_mesh_apply_text_and_files_raise_invalid_config_not_a_traceback(tmp_path: Path) -> None:
    """Mesh.apply's and the CLI's parse paths (text, files) end in InvalidConfig with the located message."""
    for name, (text, expected) in CASES.items():
        if "surrogate" in name:
            continue  # a file on disk cannot hold one
        with pytest.raises(InvalidConfig) as info:
            load_resources([text if "\n" in text else text + "\n"])
        assert expected in str(info.value), name
        path = tmp_path / "f.yaml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(InvalidConfig) as info:
            load_resources([str(path)])
        assert expected in str(info.value), name


def test_object_over_etcd_limit_is_refused_with_kubernetes_words() -> None:
    def vs_with_value(size: int) -> str:
        return HEAD + f"  hosts: [r]\n  http:\n  - match: [{{headers: {{x: {{exact: {'v' * size}}}}}}}]\n" \
            "    route: [{destination: {host: r}}]\n"

    report = validate_documents(parse_text(vs_with_value(MAX_OBJECT_BYTES), "big.yaml"))
    assert [p.message.split(" (")[0] for p in report.errors] == ["etcdserver: request is too large"]
    assert f"at most {MAX_OBJECT_BYTES}" in report.errors[0].message
    assert report.errors[0].kind == "VirtualService" and report.errors[0].source == "big.yaml"
    assert not validate_documents(parse_text(vs_with_value(MAX_OBJECT_BYTES - 1000), "ok.yaml")).errors


def test_a_source_beyond_the_read_cap_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("x: " + "a" * (MAX_SOURCE_BYTES + 10) + "\n")
    started = time.perf_counter()
    docs = load_paths([str(path)])
    assert time.perf_counter() - started < 2.0
    assert docs[0].error is not None and f"at most {MAX_SOURCE_BYTES}" in docs[0].error.message
