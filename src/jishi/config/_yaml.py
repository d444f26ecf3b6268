"""YAML with line numbers: plain Python values plus a map from each node's path to the line it sits on.

PyYAML's composer gives every node a start mark; `load_with_lines` walks the composed tree, builds the same
values `yaml.safe_load` would (scalars through PyYAML's own safe constructor), and records, for every mapping
key and sequence item, the 1-based line where it was written. A path is a tuple of mapping keys (str) and
sequence indexes (int): `("services", "catalog", "instances")`, `("routes", 0, "prefix")`.

Syntax errors and duplicate keys become `ConfigError`s that name the file, line and column.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from jishi.errors import ConfigError

__all__ = ["Lines", "Path", "dotted", "load_with_lines"]

Path = tuple[str | int, ...]
Lines = dict[Path, int]


def load_with_lines(text: str, file: str) -> tuple[Any, Lines]:
    """Parse `text` (the contents of `file`) into values and a path → line map."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        column = f" (column {mark.column + 1})" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(
            f"YAML syntax error{column}: {problem}",
            file=file,
            line=line,
            fix="check indentation (spaces, not tabs), quotes and colons around this line",
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML syntax error: {exc}", file=file, fix="check the file is valid YAML") from exc
    lines: Lines = {}
    if root is None:
        return None, lines
    builder = _Builder(file, lines)
    return builder.build(root, ()), lines


class _Builder:
    def __init__(self, file: str, lines: Lines) -> None:
        self.file = file
        self.lines = lines
        self.scalars = SafeConstructor()

    def build(self, node: Node, path: Path) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, ScalarNode):
            return self.scalars.construct_object(node, deep=True)
        raise ConfigError(  # pragma: no cover - compose yields only the three node kinds
            f"unsupported YAML node {type(node).__name__}", file=self.file, line=node.start_mark.line + 1
        )

    def _mapping(self, node: MappingNode, path: Path) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, ScalarNode):
                raise ConfigError(
                    "a mapping key must be a plain value", file=self.file, line=line, fix="use a name as the key"
                )
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise ConfigError(
                    "YAML merge keys (<<) are not supported", file=self.file, line=line, fix="write the keys out"
                )
            key = self.scalars.construct_object(key_node, deep=True)
            if not isinstance(key, str | int) or isinstance(key, bool):
                # Keys are names: YAML 1.1 would read a key written `on:`, `off:`, `yes:` or `no:` as a boolean
                # (and `null:` as None), so a key keeps the text it was written as.
                key = key_node.value
            if key in out:
                where = dotted((*path, key))
                raise ConfigError(
                    f"duplicate key {key!r} (first written on line {self.lines[(*path, key)]})",
                    file=self.file,
                    line=line,
                    field=where,
                    fix="keep one of the two entries",
                )
            self.lines[(*path, key)] = line
            out[key] = self.build(value_node, (*path, key))  # the path keeps the key's line, not the value's
        return out


def dotted(path: Path) -> str:
    """`("routes", 0, "prefix")` → "routes[0].prefix", as errors show a field."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
