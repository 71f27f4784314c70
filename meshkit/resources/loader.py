"""Read multi-document YAML into :class:`Document` records that remember the line of every field.

Syntax errors do not raise: they become a document whose ``error`` is a located :class:`Problem`
(code ``YAML``), so one bad file is reported like any other invalid resource.

Example::

    >>> docs = parse_text("kind: VirtualService\\n---\\n---\\nkind: DestinationRule\\n", "f.yaml")
    >>> [(d.index, d.line, d.data["kind"]) for d in docs]
    [(0, 1, 'VirtualService'), (2, 4, 'DestinationRule')]
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import yaml

from meshkit.errors import InvalidConfig
from meshkit.resources.model import Document, Path, Problem, format_path

_MAX_DEPTH = 200
_COLLECTION_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


class _Builder:
    """Turns a composed YAML node tree into plain data plus a path -> line map."""

    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = loader
        self.lines: dict[Path, int] = {}
        self.duplicates: list[tuple[Path, str, int]] = []

    def build(self, node: yaml.Node, path: Path) -> Any:
        if len(path) > _MAX_DEPTH:
            raise yaml.YAMLError("document is nested too deeply (recursive aliases?)")
        if isinstance(node, yaml.CollectionNode) and node.tag not in _COLLECTION_TAGS:
            raise yaml.constructor.ConstructorError(
                None, None, f"could not determine a constructor for the tag {node.tag!r}", node.start_mark
            )
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)  # resolves "<<" merge keys
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node, deep=True)
                if isinstance(key, list | dict):
                    raise yaml.constructor.ConstructorError(None, None, "found unhashable key", key_node.start_mark)
                child = (*path, str(key))
                line = key_node.start_mark.line + 1
                if key in out:
                    self.duplicates.append((child, str(key), line))
                self.lines[child] = line
                out[key] = self.build(value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                self.lines[(*path, i)] = item.start_mark.line + 1
                items.append(self.build(item, (*path, i)))
            return items
        return self.loader.construct_object(node, deep=True)


def _syntax_problem(exc: yaml.YAMLError, source: str, index: int, fallback_line: int) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    text = f"{context}: {problem}" if context and "while" not in context else problem
    line = mark.line + 1 if mark is not None else fallback_line
    where = f" (line {line}, column {mark.column + 1})" if mark is not None else ""
    return Problem("Error", "YAML", f"error converting YAML: {text}{where}", source=source, index=index, line=line)


def parse_text(text: str, source: str = "-") -> list[Document]:
    """Split ``text`` into documents; empty documents are skipped but keep their position (index)."""
    docs: list[Document] = []
    loader = yaml.SafeLoader(text)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                break
            if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
                index += 1
                continue
            builder = _Builder(loader)
            data = builder.build(node, ())
            first_line = node.start_mark.line + 1
            doc = Document(source, index, data, first_line, builder.lines)
            if builder.duplicates:
                path, key, line = builder.duplicates[0]
                error = Problem(
                    "Error",
                    "YAML",
                    f'error converting YAML: key "{key}" already set in map',
                    source=source,
                    index=index,
                    field=format_path(path),
                    line=line,
                )
                doc = Document(source, index, data, first_line, builder.lines, error)
            docs.append(doc)
            index += 1
    except yaml.YAMLError as exc:
        problem = _syntax_problem(exc, source, index, 1)
        docs.append(Document(source, index, None, problem.line or 1, {}, problem))
    finally:
        loader.dispose()
    return docs


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        raise InvalidConfig([f'error: the path "{path}" does not exist']) from None
    except UnicodeDecodeError as exc:
        raise InvalidConfig([f"error: {path}: not a UTF-8 text file ({exc.reason})"]) from None
    except OSError as exc:
        raise InvalidConfig([f"error: {path}: {exc.strerror}"]) from None


def load_paths(paths: Sequence[str]) -> list[Document]:
    """Documents of files, directories (their ``*.yaml``/``*.yml``, sorted, not recursive) and ``-``.

    A missing path raises :class:`meshkit.errors.InvalidConfig`.
    """
    docs: list[Document] = []
    for path in paths:
        if path != "-" and os.path.isdir(path):
            names = sorted(n for n in os.listdir(path) if n.endswith((".yaml", ".yml")))
            files = [os.path.join(path, n) for n in names if os.path.isfile(os.path.join(path, n))]
            if not files:
                raise InvalidConfig([f'error: the directory "{path}" has no .yaml or .yml files'])
        else:
            files = [path]
        for file in files:
            docs.extend(parse_text(_read(file), file))
    return docs
