"""User-facing errors: the CLI prints these without a traceback and exits 1."""

from __future__ import annotations

from dataclasses import dataclass


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
