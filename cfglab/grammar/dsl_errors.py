"""Grammar-file mistakes in words: what lark's parse errors mean to a person, and where they are.

cfglab.grammar.dsl raises every mistake as a `LocatedError` built here: file:line:col, the line
with a caret, and a hint that names what was expected in plain words (never lark's token names).
"""

from __future__ import annotations

from collections.abc import Sequence

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from cfglab.errors import LocatedError, Location

KEYWORDS = ("grammar", "start", "terminals")

SYNTAX_HINT = (
    "a grammar file has a `grammar NAME` line, a `start S` line, an optional "
    '`terminals "a" "b"` line, and rules like `S -> A "a" [0.5] | "b"`'
)
ESCAPE_HINT = (
    'inside a terminal write \\" for a quote and \\\\ for a backslash; '
    "\\n \\t \\r \\xHH \\uHHHH \\UHHHHHHHH are the other escapes"
)


# --- syntax errors in words ----------------------------------------------------------------
_WORDS = {  # lark's token names → what a person would call them (never print the names)
    "NAME": "a nonterminal name",
    "TERMINAL": "a quoted terminal",
    "ARROW": '"->"',
    "BAR": '"|"',
    "WEIGHT": "a weight in brackets like [0.5]",
    "GRAMMAR": '"grammar"',
    "START": '"start"',
    "TERMINALS": '"terminals"',
    "_NL": "the end of the line",
    "$END": "the end of the line",
}
_STATEMENT_START = {"GRAMMAR", "START", "TERMINALS"}


def syntax_error(err: UnexpectedInput, text: str, file: str) -> LocatedError:
    line, col = err.line, err.column
    expected = _expected(err)
    words = _line(text, line).split() if isinstance(line, int) else []
    if (
        words
        and words[0] in KEYWORDS
        and not (isinstance(err, UnexpectedToken) and err.token.type == "ARROW")
    ):
        expected.discard("ARROW")  # `start -> ...` is legal, but not what this line means
    if isinstance(err, UnexpectedCharacters):
        pos = err.pos_in_stream
        char = text[pos] if pos is not None and 0 <= pos < len(text) else ""
        message, hint = _unexpected_char(char, expected, words[:1])
    else:
        token = getattr(err, "token", None)
        if not isinstance(token, Token) or token.type == "$END":
            token = end_token(text)
            line, col = position(token)
        message = f"unexpected {_describe(token)}; expected {_expected_words(expected, words[:1])}"
        hint = _token_hint(token, expected, _line(text, line))
    if not isinstance(line, int) or not isinstance(col, int) or line < 1 or col < 1:
        line, col = 1, 1  # lark could not say; never a bogus location
    return LocatedError(message, location(text, file, line, col), hint)


def _expected(err: UnexpectedInput) -> set[str]:
    if isinstance(err, UnexpectedCharacters):
        allowed = set(err.allowed or ())
        if allowed == {"NAME", "_NL"}:  # a statement's start: the keywords lex as NAME there
            allowed |= _STATEMENT_START
        return allowed
    if isinstance(err, UnexpectedToken):
        try:
            accepts = err.accepts
        except Exception:
            accepts = None
        return set(accepts or err.expected or ())
    return set(getattr(err, "expected", None) or ())


def _expected_words(expected: set[str], first_word: Sequence[str] = ()) -> str:
    words: list[str] = []
    if list(first_word) == ["grammar"] and "NAME" in expected:
        words.append("a name for the grammar")
        expected = expected - {"NAME"}
    if expected >= _STATEMENT_START:
        words.append("a rule (`A -> ...`) or a `grammar`, `start` or `terminals` line")
        expected = expected - _STATEMENT_START - {"NAME", "_NL", "$END"}
    order = list(_WORDS)
    for name in sorted(expected, key=lambda n: order.index(n) if n in order else len(order)):
        word = _WORDS.get(name)
        if word and word not in words:
            words.append(word)
    if not words:
        return "something else"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _unexpected_char(char: str, expected: set[str], first_word: list[str]) -> tuple[str, str]:
    words = _expected_words(expected, first_word)
    if char == '"' and "TERMINAL" in expected:
        return "this terminal has no closing quote", "close it on the same line; " + ESCAPE_HINT
    if char == "[" and "WEIGHT" in expected:
        return (
            "this weight has no closing bracket",
            "write a weight as [0.5] at the end of an alternative, on one line",
        )
    message = f"unexpected character {_describe_char(char)}; expected {words}"
    if char and not char.isprintable() and char not in "\t\n\r\f":
        return message, "this does not look like a grammar file (binary or control characters)"
    if char == "'":
        return message, 'terminals are quoted with double quotes, as in "a"'
    if char in "{[" and expected >= _STATEMENT_START:
        return message, (
            "this looks like JSON, not a grammar file; `cfglab import-json` "
            "converts the authors' JSON grammars"
        )
    if char in ("=", ":", "-", ">") or expected == {"ARROW"}:
        return message, 'a rule is written `A -> B C | "a"`'
    if char.isdigit() and list(first_word) == ["grammar"]:
        return message, 'a name starts with a letter or "_", as in `grammar cfg3b`'
    if char.isdigit() and "NAME" in expected:
        return message, ('names start with a letter or "_"; a terminal must be quoted, as in "1"')
    if char == "[":
        return message, "a weight goes at the end of an alternative, as in `A -> B C [0.5]`"
    return message, SYNTAX_HINT


def _token_hint(token: Token, expected: set[str], line_text: str) -> str:
    first_word = line_text.split()[0] if line_text.split() else ""
    if token.type == "TERMINAL" and expected >= _STATEMENT_START:
        return (
            "a rule's left side must be a nonterminal name; quoted terminals appear only on "
            "right sides"
        )
    if token.type == "ARROW" and "BAR" in expected:
        return 'one rule per line: is a line break missing before this "->"?'
    if token.type == "WEIGHT":
        return "a weight goes at the end of an alternative, as in `A -> B C [0.5]`"
    if first_word == "grammar" and token.type != "ARROW":
        return "name the grammar on its first line: `grammar NAME` (a name like cfg3b)"
    if first_word == "start" and token.type != "ARROW":
        return "name the start nonterminal: `start S`"
    if first_word == "terminals" and token.type != "ARROW":
        return 'list the terminals in token order: `terminals "a" "b" "c"`'
    if expected == {"ARROW"}:
        return 'a rule is written `A -> B C | "a"`'
    return SYNTAX_HINT


def _describe(token: Token) -> str:
    kind, value = token.type, str(token.value)
    if kind == "$END":
        return "end of file"
    if kind == "_NL":  # newlines and comments are one token; either way the line ended
        return "end of line"
    if kind in _STATEMENT_START:
        return f'keyword "{value}"'
    if kind == "NAME":
        return f"name {clip(value)}"
    if kind == "TERMINAL":
        return f"terminal {clip(value)}"
    if kind == "WEIGHT":
        return f"weight {clip(value)}"
    return f'"{clip(value)}"'


def _describe_char(char: str) -> str:
    if not char:
        return "end of file"
    if char.isprintable() and not char.isspace():
        return repr(char)
    return f"U+{ord(char):04X} (a control or space character)"


# --- locations -----------------------------------------------------------------------------
_LONG_LINE = 300  # longer source lines are not echoed (a caret under them would not help)


def location(text: str, file: str, line: int, col: int) -> Location:
    return Location(file, line, col, display_line(_line(text, line)))


def _line(text: str, line: int) -> str:
    start = 0
    for _ in range(line - 1):
        start = text.find("\n", start) + 1
        if start == 0:
            return ""
    end = text.find("\n", start)
    return text[start : len(text) if end < 0 else end]


def display_line(line: str) -> str:
    """The line as shown under an error: one printable character per character, so the caret
    lines up (tabs become spaces, control characters become '?')."""
    if len(line) > _LONG_LINE:
        return ""
    line = line.rstrip("\r")
    return "".join(" " if ch == "\t" else ch if ch.isprintable() else "?" for ch in line)


def clip(s: str, n: int = 40) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def position(token: Token) -> tuple[int, int]:
    """A token's 1-based (line, column): lark's parser sets both on every token it yields."""
    assert token.line is not None and token.column is not None, token
    return token.line, token.column


def end_token(text: str) -> Token:
    """A stand-in token at the end of the text (for errors about something missing)."""
    line = text.count("\n") + 1
    col = len(text) - (text.rfind("\n") + 1) + 1
    return Token("$END", "", line=line, column=col)
