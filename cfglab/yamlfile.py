"""YAML files a user writes (train configs, sweep files), read so that a mistake names its line.

    file = read_mapping(path, "a sweep file is a mapping of fields (name, grammars, ...)")
    spec = validate(SweepSpec, file.data, file)          # CfglabError: file:line:col: field: why

An error is shown at the YAML node its pydantic location points to: the value for a bad value,
the key for an unknown field. Values that did not come from the file (command-line flags, merged
overrides) are named by their field alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from cfglab.errors import CfglabError, Location, format_validation_error

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class YamlFile:
    """A YAML mapping with the node tree it was read from (for line numbers)."""

    path: Path
    data: dict[str, Any]
    root: yaml.Node

    def lines(self) -> list[str]:
        buffer = self.root.start_mark.buffer
        return buffer.rstrip("\0").splitlines() if buffer else []

    def node(self, loc: tuple[Any, ...], at_key: bool = False) -> tuple[bool, yaml.Node]:
        """Follow `loc` down from the root; (whether all of it matched, the deepest node reached).
        `at_key`: end at the last key rather than its value (an unknown field is shown by name)."""
        return descend(self.root, loc, at_key)


def read_mapping(path: str | Path, what: str) -> YamlFile:
    """Read a YAML file whose top level must be a mapping; `what` says what it should hold."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CfglabError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CfglabError(f"{path}: cannot read: {err}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise CfglabError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict) or root is None:
        raise CfglabError(f"{path}: {what}")
    return YamlFile(path, data, root)


def validate(
    model: type[M],
    data: dict[str, Any],
    file: YamlFile,
    heading: str = "invalid configuration",
    overlay: tuple[str, yaml.Node] | None = None,
    not_from_file: frozenset[str] = frozenset(),
) -> M:
    """`model(**data)`, its errors located in `file`.

    `overlay` (name, node): a section of the file whose values were merged over the top level
    (a sweep's `smoke:`); errors it explains point into it. `not_from_file`: top-level fields
    given elsewhere (flags), named without a line."""
    try:
        return model(**data)
    except ValidationError as err:

        def locate(loc: tuple[Any, ...], unknown: bool) -> tuple[str, Location | None]:
            if loc and str(loc[0]) in not_from_file:
                return "", None
            if overlay is not None:
                found, node = descend(overlay[1], loc, unknown)
                if found:
                    return overlay[0] + ".", _location(file, node)
            return "", _location(file, file.node(loc, unknown)[1])

        raise CfglabError(format_validation_error(err, f"{file.path}: {heading}", locate)) from None
    except TypeError as err:  # non-string keys at the top level
        raise CfglabError(f"{file.path}: {err}") from None


def _location(file: YamlFile, node: yaml.Node) -> Location:
    line, col = node.start_mark.line + 1, node.start_mark.column + 1
    lines = file.lines()
    text = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    return Location(str(file.path), line, col, text)


def descend(node: yaml.Node, loc: tuple[Any, ...], at_key: bool = False) -> tuple[bool, yaml.Node]:
    """Follow `loc` down the node tree; (whether all of it matched, the deepest node reached)."""
    for i, part in enumerate(loc):
        child = _child(node, part, at_key and i == len(loc) - 1)
        if child is None:
            return False, node
        node = child
    return True, node


def _child(node: yaml.Node, part: Any, key_node: bool) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == str(part):
                return key if key_node else value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part]
    return None
