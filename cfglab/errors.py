"""User-facing errors: the CLI prints these without a traceback and exits 1."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


class CfglabError(Exception):
    """A mistake in what the user gave us (a file, a flag, an input line)."""


@dataclass
class Location:
    """Where in a text file something went wrong (1-based line and column)."""

    file: str
    line: int
    col: int
    source_line: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class LocatedError(CfglabError):
    """An error at file:line:col, with the offending line, a caret and a hint."""

    def __init__(self, message: str, location: Location, hint: str = "") -> None:
        self.message = message
        self.location = location
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        loc = self.location
        text = f"{loc}: error: {self.message}"
        if loc.source_line:
            text += f"\n    {loc.source_line.rstrip()}\n    {' ' * max(loc.col - 1, 0)}^"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class LocatedErrors(LocatedError):
    """Every error one read of a file found, in file order, listed together.

    The first error is this one's message, location and hint (code that reads one error keeps
    working, and the first block of the text is exactly that error's); then each further error
    as its own located block, and a count. Use `located_errors` to build one."""

    def __init__(self, errors: Sequence[LocatedError], unlisted: int = 0, note: str = "") -> None:
        assert errors, "at least one error"
        self.errors = tuple(errors)
        self.unlisted = unlisted  # found but not listed (a cap keeps the text readable)
        self.note = note
        first = self.errors[0]
        super().__init__(first.message, first.location, first.hint)

    def render(self) -> str:
        blocks = [e.render() for e in self.errors]
        total = len(self.errors) + self.unlisted
        summary = f"{self.location.file}: {total} error{'s' if total > 1 else ''}"
        if self.unlisted:
            summary += f" ({self.unlisted} more not listed)"
        if self.note:
            summary += f"; {self.note}"
        return "\n".join([*blocks, summary])


MAX_LISTED = 25  # errors listed in one message; the rest are counted


def located_errors(errors: Sequence[LocatedError], note: str = "", more: int = 0) -> LocatedError:
    """One error for several: the single error itself, or a LocatedErrors listing them in file
    order, at most MAX_LISTED (`more`: errors found but not even passed here, only counted;
    `note` is said after the count)."""
    ordered = sorted(errors, key=lambda e: (e.location.line, e.location.col))
    if len(ordered) == 1 and not note and not more:
        return ordered[0]
    listed = ordered[:MAX_LISTED]
    return LocatedErrors(listed, len(ordered) - len(listed) + more, note)


# Where a pydantic error location came from: (a prefix for its dotted path, its place in a file).
Locator = Callable[[tuple[Any, ...], bool], tuple[str, Location | None]]


def format_validation_error(
    err: ValidationError, heading: str, locate: Locator | None = None
) -> str:
    """`heading`, then one line per bad field with its dotted path: what a user needs to fix it.

    With `locate` (see cfglab.yamlfile), fields found in a file are shown as file:line:col with
    the line itself, in file order; the others follow by name."""
    located: list[tuple[int, int, str]] = []
    named: list[str] = []
    for e in err.errors():
        loc = tuple(e["loc"])
        unknown = e["type"] == "extra_forbidden"
        msg = "unknown field (not allowed)" if unknown else e["msg"].removeprefix("Value error, ")
        prefix, where = locate(loc, unknown) if locate else ("", None)
        dotted = prefix + ".".join(str(p) for p in loc) or "(top level)"
        if where is None:
            named.append(f"  {dotted}: {msg}")
            continue
        text = f"  {where}: {dotted}: {msg}"
        if where.source_line:
            text += f"\n      {where.source_line}"
        located.append((where.line, where.col, text))
    return "\n".join([heading] + [t for _, _, t in sorted(located)] + named)
