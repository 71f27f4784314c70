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
#: what one apply source may hold: Kubernetes refuses any single object over 1.5 MiB (etcd's
#: request limit), so a file beyond this holds nothing admissible; reading stops here
MAX_SOURCE_BYTES = 8 * 1024 * 1024
#: nodes one document may build, aliases expanded: no admissible object (1.5 MiB of JSON, at
#: least two bytes a value) has more, and a billion-laughs document stops here instead of
#: expanding (the bound is on what is built, not on how deep the aliases go)
MAX_NODES = 800_000
#: nodes one document may build by expanding aliases (go-yaml, behind kubectl, also refuses
#: "excessive aliasing"); documents written by hand reuse a few anchors, far below this
MAX_ALIAS_NODES = 50_000
_COLLECTION_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
# scalars JSON cannot hold are kept as their text, as Kubernetes' YAML-to-JSON conversion does
_AS_TEXT_TAGS = frozenset({"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:binary"})
_SafeLoader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: same rules, ~6x faster


class _TooMany(yaml.MarkedYAMLError):
    pass


class _Builder:
    """Turns a composed YAML node tree into plain data plus a path -> line map."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.lines: dict[Path, int] = {}
        self.duplicates: list[tuple[Path, str, int]] = []
        self.built = 0
        self.seen: set[int] = set()
        self.alias_built = 0
        self.in_alias = False

    def build(self, node: yaml.Node, path: Path) -> Any:
        if len(path) > _MAX_DEPTH:
            raise yaml.YAMLError("document is nested too deeply (recursive aliases?)")
        self.built += 1
        self.alias_built += self.in_alias
        if self.alias_built > MAX_ALIAS_NODES:
            raise _TooMany(None, None, "document contains excessive aliasing", node.start_mark)
        if self.built > MAX_NODES:
            raise _TooMany(None, None, f"document has more than {MAX_NODES} nodes", node.start_mark)
        if isinstance(node, yaml.CollectionNode):
            if id(node) in self.seen and not self.in_alias:
                # the composer hands an alias back as the node it names: count what it expands to
                self.in_alias = True
                try:
                    return self.build(node, path)
                finally:
                    self.in_alias = False
            self.seen.add(id(node))
            if node.tag not in _COLLECTION_TAGS:
                raise yaml.constructor.ConstructorError(
                    None, None, f"could not determine a constructor for the tag {node.tag!r}", node.start_mark
                )
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)  # resolves "<<" merge keys
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.CollectionNode):
                    raise yaml.constructor.ConstructorError(None, None, "found unhashable key", key_node.start_mark)
                key = self._scalar(key_node)
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
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> Any:
        if node.tag in _AS_TEXT_TAGS:
            return node.value
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError:
            raise
        except (ValueError, OverflowError, TypeError) as exc:
            if node.tag == "tag:yaml.org,2002:int" and node.value.lstrip("+-").isdigit():
                return node.value  # too many digits for a number: Kubernetes keeps such a value as text
            short = node.value if len(node.value) <= 40 else node.value[:40] + "..."
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot decode {short!r} as {node.tag.rsplit(':', 1)[-1]} ({exc})", node.start_mark
            ) from None


def _syntax_problem(exc: yaml.YAMLError, source: str, index: int, fallback_line: int, text: str = "") -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    if isinstance(exc, yaml.reader.ReaderError):
        # a character YAML does not allow (a control character, invalid UTF-8): located by position
        line = text.count("\n", 0, exc.position) + 1 if text else fallback_line
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1 if text else 1
        what = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        message = f"error converting YAML: unacceptable character {what}: {exc.reason} (line {line}, column {col})"
        return Problem("Error", "YAML", message, source=source, index=index, line=line)
    text_ = f"{context}: {problem}" if context and "while" not in context else problem
    line = mark.line + 1 if mark is not None else fallback_line
    where = f" (line {line}, column {mark.column + 1})" if mark is not None else ""
    return Problem("Error", "YAML", f"error converting YAML: {text_}{where}", source=source, index=index, line=line)


def parse_text(text: str, source: str = "-") -> list[Document]:
    """Split ``text`` into documents; empty documents are skipped but keep their position (index).

    Whatever the text, this returns documents (the first one that cannot be read carries a located
    ``YAML`` problem); it never raises, and size, nesting and alias expansion are bounded.
    """
    if len(text) > MAX_SOURCE_BYTES:
        message = (f"error converting YAML: the input is {len(text)} characters; at most {MAX_SOURCE_BYTES}"
                   " are read (Kubernetes refuses any object over 1.5 MiB)")
        return [Document(source, 0, None, 1, {}, Problem("Error", "YAML", message, source=source, index=0, line=1))]
    docs: list[Document] = []
    index = 0
    loader = None
    try:
        loader = _SafeLoader(text)
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
        problem = _syntax_problem(exc, source, index, 1, text)
        docs.append(Document(source, index, None, problem.line or 1, {}, problem))
    except UnicodeError as exc:  # a str that is not Unicode text (lone surrogates)
        message = f"error converting YAML: the text is not valid Unicode ({getattr(exc, 'reason', exc)})"
        docs.append(Document(source, index, None, 1, {}, Problem("Error", "YAML", message, source=source,
                                                                 index=index, line=1)))
    except RecursionError:
        message = f"error converting YAML: document is nested more than {_MAX_DEPTH} levels deep"
        docs.append(Document(source, index, None, 1, {}, Problem("Error", "YAML", message, source=source,
                                                                 index=index, line=1)))
    finally:
        if loader is not None:
            loader.dispose()
    return docs


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read(MAX_SOURCE_BYTES + 1)
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read(MAX_SOURCE_BYTES + 1)  # parse_text refuses a longer text
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
