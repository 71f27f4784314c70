"""YAML loading: documents, positions, syntax errors, files, directories and stdin."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from meshkit.errors import InvalidConfig
from meshkit.resources import load_paths, parse_text, validate_documents

TWO_DOCS = """\
# leading comment
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: a
---
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: b
spec:
  host: recommendation
"""


def test_documents_keep_index_and_first_line_and_skip_empty_ones() -> None:
    docs = parse_text(TWO_DOCS, "f.yaml")
    assert [(d.source, d.index, d.line, d.data["kind"]) for d in docs] == [
        ("f.yaml", 0, 2, "VirtualService"),
        ("f.yaml", 2, 8, "DestinationRule"),
    ]


def test_every_field_has_its_line() -> None:
    doc = parse_text(TWO_DOCS)[1]
    assert doc.lines[("spec", "host")] == 13
    assert doc.line_of(("spec", "host", "missing", 3)) == 13
    assert doc.line_of(("nothing",)) == 8


def test_syntax_error_becomes_a_located_problem_not_an_exception() -> None:
    text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nspec:\n  hosts: a: b\n"
    docs = parse_text(text, "bad.yaml")
    assert docs[0].data is None
    problem = docs[0].error
    assert problem is not None
    assert problem.code == "YAML"
    assert problem.line == 4
    assert problem.format() == (
        "error: bad.yaml, document 1 (line 4): error converting YAML: "
        "mapping values are not allowed in this context (line 4, column 11)"  # libyaml's (and go-yaml's) words
    )
    report = validate_documents(docs)
    assert [p.code for p in report.errors] == ["YAML"]


def test_documents_before_a_syntax_error_are_kept() -> None:
    docs = parse_text("kind: A\n---\nkey: [unclosed\n", "f.yaml")
    assert docs[0].data == {"kind": "A"}
    assert docs[1].index == 1 and docs[1].error is not None
    assert "line 4" in docs[1].error.message or "line 3" in docs[1].error.message


def test_duplicate_keys_are_reported_like_kubectl() -> None:
    docs = parse_text("spec:\n  host: a\n  host: b\n", "dup.yaml")
    assert docs[0].error is not None
    assert docs[0].error.message == 'error converting YAML: key "host" already set in map'
    assert (docs[0].error.field, docs[0].error.line) == ("spec.host", 3)


def test_python_tags_are_refused_safely() -> None:
    docs = parse_text("a: !!python/object/apply:os.system ['true']\n")
    assert docs[0].error is not None and docs[0].error.code == "YAML"


def test_load_paths_reads_files_and_sorted_directories(tmp_path: Path) -> None:
    (tmp_path / "b.yml").write_text("kind: B\n")
    (tmp_path / "a.yaml").write_text("kind: A\n---\nkind: A2\n")
    (tmp_path / "notes.txt").write_text("kind: ignored\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("kind: C\n")
    docs = load_paths([str(tmp_path)])
    assert [(Path(d.source).name, d.data["kind"]) for d in docs] == [("a.yaml", "A"), ("a.yaml", "A2"), ("b.yml", "B")]


def test_load_paths_reads_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("kind: FromStdin\n"))
    docs = load_paths(["-"])
    assert docs[0].data == {"kind": "FromStdin"} and docs[0].source == "-"


def test_missing_file_raises_invalid_config(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(InvalidConfig) as err:
        load_paths([str(missing)])
    assert err.value.problems == [f'error: the path "{missing}" does not exist']


def test_directory_without_yaml_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match=r"has no \.yaml or \.yml files"):
        load_paths([str(tmp_path)])
