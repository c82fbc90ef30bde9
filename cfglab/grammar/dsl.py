"""Grammar files ⇄ Grammar: the Lark reader with located errors, and the canonical writer.

The semantic half of reading (parse tree → Grammar, every problem located) is dsl_build; the
wording of errors is dsl_errors; quoting and escapes of terminals are dsl_quote.

A grammar file (the syntax is in dsl.lark):

    # cfg3b: leading comment lines become Grammar.header
    grammar cfg3b
    start N22
    terminals "1" "2" "3"
    N22 -> N21 N20 | N20 N19
    N7  -> "3" "1" [0.5] | "1" "2" "3"

Every mistake, syntactic or semantic, is a located block (file:line:col, the line with a
caret, a hint), and one read reports all it finds together (`cfglab.errors.LocatedErrors`): the
parser recovers from a syntax error at the next line, the builder collects every semantic one.
Work is bounded: texts over `MAX_BYTES`, or with more than `MAX_RULES` rules or `MAX_TOKENS`
symbols, are refused (the parser stops at the first token past the limit), the LALR parser with
a contextual lexer is linear in the input, and recovery stops after `MAX_SYNTAX_ERRORS`.
`parse_grammar(format_grammar(g)) == g` for every grammar `format_grammar` accepts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import (
    LarkError,
    UnexpectedInput,
    UnexpectedToken,
)
from lark.utils import TextSlice

from cfglab.errors import CfglabError, LocatedError, Location
from cfglab.grammar.core import MAX_RULES, Grammar, Rule
from cfglab.grammar.dsl_build import Builder
from cfglab.grammar.dsl_errors import (
    SYNTAX_HINT,
    display_line,
    location,
    position,
    syntax_error,
)
from cfglab.grammar.dsl_quote import quote

MAX_SYNTAX_ERRORS = 25  # syntax errors reported before the parser gives up recovering
# larger grammar files are refused: lark's parse time grows linearly (benchmarks/RESULTS.md)
MAX_BYTES = 1_000_000
MAX_TOKENS = 400_000  # symbols, arrows, bars, weights: bounds parsing at a few seconds
NAME_RE = re.compile(r"[^\W\d]\w*")  # nonterminal and grammar names (same as dsl.lark's NAME)


# --- reading -------------------------------------------------------------------------------
def load_grammar(path: str | Path) -> Grammar:
    """Read and parse a grammar file; every problem is a CfglabError naming the file."""
    text = read_text_file(
        path,
        "grammar file",
        empty_hint="it needs a `grammar NAME` line, a `start S` line and rules",
    )
    return _parse(text, str(path), source=str(path))


def parse_grammar(text: str, file: str = "<string>") -> Grammar:
    """Parse grammar text; a LocatedError (file:line:col) for every syntax or semantic error."""
    return _parse(text, file, source=None)


def read_text_file(path: str | Path, what: str, empty_hint: str = "") -> str:
    """A bounded, UTF-8 text file's contents, or a CfglabError saying what is wrong with it."""
    p = Path(path)
    try:
        if p.is_dir():
            raise CfglabError(f"{p}: is a directory, not a {what}")
        if not p.exists():
            raise CfglabError(f"{p}: no such file")
        if not p.is_file():  # a FIFO or a device could block or never end
            raise CfglabError(f"{p}: not a regular file, so not a {what}")
        with p.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as err:
        raise CfglabError(f"{p}: cannot read it ({err.strerror or err})") from None
    if len(data) > MAX_BYTES:
        raise CfglabError(
            f"{p}: larger than {MAX_BYTES:,} bytes, the limit for a {what}; refusing to read it"
        )
    if not data.strip():
        raise CfglabError(f"{p}: the file is empty" + (f"; {empty_hint}" if empty_hint else ""))
    if b"\x00" in data:
        raise _binary(p, data, what)
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark is not content
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _not_utf8(p, data, err, what) from None


def _binary(p: Path, data: bytes, what: str) -> LocatedError:
    at = data.index(b"\x00")
    line_start = data.rfind(b"\n", 0, at) + 1
    where = Location(
        str(p),
        data.count(b"\n", 0, at) + 1,
        len(data[line_start:at].decode("utf-8", "replace")) + 1,
    )
    return LocatedError(
        f"a NUL byte: this is a binary file, not a {what}", where, "is this the right file?"
    )


def _not_utf8(p: Path, data: bytes, err: UnicodeDecodeError, what: str) -> LocatedError:
    start = err.start
    line_start = data.rfind(b"\n", 0, start) + 1
    line_end = data.find(b"\n", start)
    line = data[line_start : len(data) if line_end < 0 else line_end]
    col = len(data[line_start:start].decode("utf-8", "replace")) + 1
    where = Location(
        str(p), data.count(b"\n", 0, start) + 1, col, display_line(line.decode("utf-8", "replace"))
    )
    return LocatedError(
        f"not UTF-8 text (byte 0x{data[start]:02x})",
        where,
        f"a {what} must be UTF-8 text; is this the right file?",
    )


def _parse(text: str, file: str, source: str | None) -> Grammar:
    if len(text) > MAX_BYTES:
        raise CfglabError(
            f"{file}: longer than {MAX_BYTES:,} characters, the limit for a "
            "grammar; refusing to parse it"
        )
    try:
        tree, syntax = _parse_tree(text, file)
    except LarkError as err:  # not expected from LALR, but never a traceback
        raise LocatedError(
            f"cannot parse this file ({type(err).__name__})", Location(file, 1, 1), SYNTAX_HINT
        ) from None
    return Builder(text, file).build(tree, source, syntax)


def _parse_tree(text: str, file: str) -> tuple[Tree, tuple[LocatedError, ...]]:
    """The statements that parse, and a located error for each line that does not.

    Recovery is by line: statements are one per line, so after a syntax error the rest of its
    line is skipped and parsing starts afresh on the next line (the statements before the
    broken line are kept by parsing up to it). Up to MAX_SYNTAX_ERRORS are reported; the work
    stays linear in the text for a bounded number of errors.
    """
    statements: list[Tree] = []
    errors: list[LocatedError] = []
    bounds = _Bounds(text, file)
    begin = 0
    while True:
        try:
            statements += _parse_slice(text, begin, bounds).children
            break
        except UnexpectedInput as err:
            errors.append(syntax_error(err, text, file))
            at = _error_offset(err, text)
        line_start = text.rfind("\n", 0, at) + 1
        if line_start > begin:  # the lines before the broken one parsed: keep them
            statements += _statements_between(text, begin, line_start)
        resume = text.find("\n", at) + 1
        if resume <= begin or len(errors) >= MAX_SYNTAX_ERRORS:
            break
        begin = resume
    return Tree("start", statements), tuple(errors)


@dataclass
class _Bounds:
    """Rules and tokens seen so far, so that a file with too many of them stops early."""

    text: str
    file: str
    rules: int = 0
    tokens: int = 0

    def count(self, token: Token) -> None:
        self.tokens += 1
        self.rules += token.type in ("ARROW", "BAR")
        if self.rules > MAX_RULES or self.tokens > MAX_TOKENS:
            what = f"{MAX_RULES:,} rules" if self.rules > MAX_RULES else f"{MAX_TOKENS:,} symbols"
            raise LocatedError(
                f"more than {what}; refusing to parse a grammar this large",
                location(self.text, self.file, *position(token)),
                "cfglab bounds the work it takes on; split or shrink the grammar",
            )


def _parse_slice(text: str, begin: int, bounds: _Bounds | None, end: int | None = None) -> Tree:
    """Parse text[begin:end] token by token (tokens keep their place in the whole text)."""
    parser = _parser().parse_interactive(TextSlice(text, begin, len(text) if end is None else end))
    last: Token | None = None
    try:
        for last in parser.iter_parse():
            if bounds is not None:
                bounds.count(last)
        return parser.feed_eof(last)
    except UnexpectedToken as err:
        if err.interactive_parser is None:  # so that err.accepts can replay the parser
            err.interactive_parser = parser
        raise


def _statements_between(text: str, begin: int, end: int) -> list[Tree]:
    """The statements of text[begin:end], whole lines that parsed before a broken one."""
    try:
        return list(_parse_slice(text, begin, None, end).children)
    except UnexpectedInput:  # not expected: the parser accepted these lines already
        return []


def _error_offset(err: UnexpectedInput, text: str) -> int:
    """Where in the text a syntax error is (the end of the text when lark cannot say)."""
    if isinstance(err, UnexpectedToken):
        at = err.token.start_pos if isinstance(err.token, Token) else None
    else:
        at = err.pos_in_stream
    return at if isinstance(at, int) and 0 <= at <= len(text) else len(text)


@lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = (Path(__file__).parent / "dsl.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", lexer="contextual", maybe_placeholders=False)


# --- writing -------------------------------------------------------------------------------
def format_grammar(g: Grammar) -> str:
    """The canonical text of a grammar: header comments, declarations, one line per nonterminal.

    Raises CfglabError when the grammar could not be read back (so the output always parses
    to an equal Grammar).
    """
    _check_writable(g)
    lines = [f"# {h}".rstrip() for text in g.header for h in text.split("\n")]
    lines += [
        f"grammar {g.name}",
        f"start {g.start}",
        " ".join(["terminals", *(quote(t) for t in g.terminals)]),
        "",
    ]
    levels = g.levels if g.is_layered else None
    width = max(map(len, g.nonterminals), default=0)
    width = width if width <= 16 else 0
    previous = None
    for nt in (nt for nt in g.nonterminals if not g.is_hidden(nt)):
        level = levels.get(nt, previous) if levels else None  # unreachable: no level of its own
        if previous is not None and level != previous:
            lines.append("")  # a blank line between levels of a layered grammar
        previous = level
        alternatives = " | ".join(_alternative_text(g, r) for r in g.rules_of(nt))
        lines.append(f"{nt.ljust(width)} -> {alternatives}")
    lines += _bag_lines(g)
    return "\n".join(lines) + "\n"


def _bag_lines(g: Grammar) -> list[str]:
    """The lexicon of an implicit grammar, one `bag` line per hidden terminal, after the rules."""
    lines = [""] if g.hidden else []
    for t in g.hidden:
        tokens = " ".join(_alternative_text(g, r) for r in g.rules_of(t))
        lines.append(f"bag {quote(t)} -> {tokens}")
    return lines


def save_grammar(g: Grammar, path: str | Path) -> None:
    """Write the canonical text to `path` (UTF-8), replacing it."""
    text = format_grammar(g)
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as err:
        raise CfglabError(f"{path}: cannot write it ({err.strerror or err})") from None


def _alternative_text(g: Grammar, rule: Rule) -> str:
    text = " ".join(quote(s) if g.is_terminal(s) or g.is_hidden(s) else s for s in rule.rhs)
    return text if rule.weight == 1.0 else f"{text} [{float(rule.weight)!r}]"


def _check_writable(g: Grammar) -> None:
    reason = _unwritable_reason(g)
    if reason:
        raise CfglabError(f"cannot write grammar {g.name!r}: {reason}")


def _unwritable_reason(g: Grammar) -> str | None:
    """Why the text of `g` would not parse back to `g` (None when it would)."""
    nonterminals = set(g.nonterminals)
    for what, name in [
        ("grammar name", g.name),
        ("start symbol", g.start),
        *(("nonterminal", nt) for nt in g.nonterminals if not g.is_hidden(nt)),
    ]:
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            return f"the {what} {name!r} is not an identifier"
    if g.start not in nonterminals:
        return f"the start symbol {g.start} has no rules"
    if not g.rules:
        return "it has no rules"
    if len(set(g.terminals)) != len(g.terminals):
        return "a terminal is listed twice"
    for t in g.terminals:
        if not isinstance(t, str) or not t:
            return f"terminal {t!r} is not a non-empty string"
        if t in nonterminals:
            return f"{t!r} is both a terminal and a nonterminal"
    reason = _lexicon_unwritable(g)
    if reason:
        return reason
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for r in g.rules:
        problem = _rule_problem(g, r, nonterminals, seen)
        if problem:
            return f"rule {r.lhs} -> {' '.join(map(str, r.rhs))}: {problem}"
    for nt in g.nonterminals:  # the reader refuses these sums and weights (dsl_build)
        total = sum(r.weight for r in g.rules_of(nt))
        if not math.isfinite(total):
            return f"the weights of {nt}'s rules add up past the largest float"
        if any(r.weight / total == 0 for r in g.rules_of(nt)):
            return f"a weight of {nt}'s rules is negligible beside the others (rounds to 0)"
    return None


def _lexicon_unwritable(g: Grammar) -> str | None:
    """Hidden terminals are written as bags last: each is a non-empty string with unary rules to
    tokens, every quoted symbol of the other rules is one, and they come after the other rules."""
    if not g.hidden:
        return None
    for t in g.hidden:
        rules = g.rules_of(t)
        if not t or not rules or any(len(r.rhs) != 1 or not g.is_terminal(r.rhs[0]) for r in rules):
            return f"hidden terminal {t!r} is not a non-empty bag of tokens"
    ordinary = [nt for nt in g.nonterminals if not g.is_hidden(nt)]
    if list(g.nonterminals) != ordinary + list(g.hidden):
        return "its hidden terminals are not the last nonterminals, in bag order"
    for r in g.rules:
        if not g.is_hidden(r.lhs) and any(g.is_terminal(s) for s in r.rhs):
            return f"rule {r.lhs} -> {' '.join(r.rhs)} uses a token outside a bag"
    return None


def _rule_problem(
    g: Grammar, r: Rule, nonterminals: set[str], seen: set[tuple[str, tuple[str, ...]]]
) -> str | None:
    if not r.rhs:
        return "an empty right-hand side (ε-rules are not supported)"
    undefined = [s for s in r.rhs if not g.is_terminal(s) and s not in nonterminals]
    if undefined:
        return f"{undefined[0]!r} is neither a terminal nor a nonterminal with rules"
    if (r.lhs, r.rhs) in seen:
        return "a duplicate rule"
    seen.add((r.lhs, r.rhs))
    w = r.weight
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
        return f"the weight {w!r} is not a positive finite number"
    return None
