"""Grammar files ⇄ Grammar: the Lark reader with located errors, and the canonical writer.

A grammar file (the syntax is in dsl.lark):

    # cfg3b: leading comment lines become Grammar.header
    grammar cfg3b
    start N22
    terminals "1" "2" "3"
    N22 -> N21 N20 | N20 N19
    N7  -> "3" "1" [0.5] | "1" "2" "3"

Every mistake, syntactic or semantic, is one `LocatedError` (file:line:col, the line with a
caret, a hint). Work is bounded: texts over `MAX_BYTES`, or with more than `MAX_RULES` rules or
`MAX_TOKENS` symbols, are refused (the parser stops at the first token past the limit), and the
LALR parser with a contextual lexer is linear in the input.
`parse_grammar(format_grammar(g)) == g` for every grammar `format_grammar` accepts.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import (
    LarkError,
    UnexpectedInput,
    UnexpectedToken,
)

from cfglab.errors import CfglabError, LocatedError, Location
from cfglab.grammar.core import MAX_RULES, Grammar, Rule
from cfglab.grammar.dsl_errors import (
    ESCAPE_HINT,
    SYNTAX_HINT,
    clip,
    display_line,
    end_token,
    location,
    position,
    syntax_error,
)

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
        raise CfglabError(f"{p}: a binary file (it contains NUL bytes), not a {what}")
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark is not content
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _not_utf8(p, data, err, what) from None


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
        tree = _parse_tree(text, file)
    except UnexpectedInput as err:
        raise syntax_error(err, text, file) from None
    except LarkError as err:  # not expected from LALR, but never a traceback
        raise LocatedError(
            f"cannot parse this file ({type(err).__name__})", Location(file, 1, 1), SYNTAX_HINT
        ) from None
    return _Builder(text, file).build(tree, source)


def _parse_tree(text: str, file: str) -> Tree:
    """Parse token by token, so that a file with too many rules or tokens stops early."""
    parser = _parser().parse_interactive(text)
    rules = tokens = 0
    last: Token | None = None
    try:
        for last in parser.iter_parse():
            tokens += 1
            rules += last.type in ("ARROW", "BAR")
            if rules > MAX_RULES or tokens > MAX_TOKENS:
                what = f"{MAX_RULES:,} rules" if rules > MAX_RULES else f"{MAX_TOKENS:,} symbols"
                raise LocatedError(
                    f"more than {what}; refusing to parse a grammar this large",
                    location(text, file, *position(last)),
                    "cfglab bounds the work it takes on; split or shrink the grammar",
                )
        return parser.feed_eof(last)
    except UnexpectedToken as err:
        if err.interactive_parser is None:  # so that err.accepts can replay the parser
            err.interactive_parser = parser
        raise


@lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = (Path(__file__).parent / "dsl.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", lexer="contextual", maybe_placeholders=False)


# --- semantic checks -----------------------------------------------------------------------
@dataclass(frozen=True)
class _Problem:
    """A semantic error found while building; only the first one (in file order) is explained."""

    line: int
    col: int
    explain: Callable[[], tuple[str, str]]  # → (message, hint), built only when reported


@dataclass(frozen=True)
class _Alternative:
    lhs: Token
    symbols: tuple[Token, ...]  # NAME or TERMINAL tokens
    weight: Token | None
    after: Token  # the "->" or "|" just before it: where an empty alternative is


class _Builder:
    """Turns the parse tree into a Grammar, collecting every semantic problem on the way."""

    def __init__(self, text: str, file: str) -> None:
        self.text = text
        self.file = file
        self.problems: list[_Problem] = []
        self.name: Token | None = None
        self.grammar_keyword: Token | None = None
        self.start: Token | None = None
        self.declared: list[tuple[str, Token]] | None = None
        self.terminals_keyword: Token | None = None
        self.alternatives: list[_Alternative] = []
        self.first_statement: Token | None = None
        self._terminal_cache: dict[str, str | None] = {}

    def problem(self, at: Token, explain: Callable[[], tuple[str, str]], offset: int = 0) -> None:
        line, col = position(at)
        self.problems.append(_Problem(line, col + offset, explain))

    # --- statements ----------------------------------------------------------------------
    def build(self, tree: Tree, source: str | None) -> Grammar:
        if not tree.children:
            raise self._located(
                1, 1, ("no grammar here: the text is empty or only comments", SYNTAX_HINT)
            )
        for statement in tree.children:
            getattr(self, "_" + statement.data)(statement.children)
        self._check_declarations()
        nonterminals = dict.fromkeys(a.lhs.value for a in self.alternatives)
        terminals = self._terminals(nonterminals)
        rules = self._rules(nonterminals, terminals)
        if self.problems:
            raise self._first_problem()
        assert self.name is not None and self.start is not None  # else a problem was recorded
        return Grammar(
            self.name.value,
            self.start.value,
            terminals,
            rules,
            header=_header(self.text),
            source=source,
        )

    def _note_statement(self, token: Token) -> None:
        if self.first_statement is None:
            self.first_statement = token

    def _grammar_decl(self, children: list[Token]) -> None:
        keyword, name = children
        if self.name is not None:
            first = self.name
            self.problem(
                keyword,
                lambda: (
                    f"a second `grammar` line (the first is on line {first.line})",
                    "a file holds one grammar; remove this line",
                ),
            )
        elif self.first_statement is not None:
            self.problem(
                keyword,
                lambda: (
                    "the `grammar NAME` line must come first",
                    "move it above the other lines (only comments may precede it)",
                ),
            )
        self._note_statement(keyword)
        if self.name is None:
            self.name, self.grammar_keyword = name, keyword

    def _start_decl(self, children: list[Token]) -> None:
        keyword, name = children
        self._note_statement(keyword)
        if self.start is not None:
            first = self.start
            self.problem(
                keyword,
                lambda: (
                    f"a second `start` line (the first is on line {first.line})",
                    "a grammar has one start symbol; remove one of the two lines",
                ),
            )
            return
        self.start = name

    def _terminals_decl(self, children: list[Token]) -> None:
        keyword, tokens = children[0], children[1:]
        self._note_statement(keyword)
        if self.terminals_keyword is not None:
            first = self.terminals_keyword
            self.problem(
                keyword,
                lambda: (
                    f"a second `terminals` line (the first is on line {first.line})",
                    "declare all terminals on one `terminals` line, in token order",
                ),
            )
            return
        self.declared, self.terminals_keyword = [], keyword
        seen: dict[str, Token] = {}
        for tok in tokens:
            name = self._terminal(tok)
            if name is None:
                continue
            if name in seen:
                self.problem(
                    tok,
                    _said(f"terminal {tok.value} is declared twice", "remove the repeated one"),
                )
                continue
            seen[name] = tok
            self.declared.append((name, tok))

    def _rule(self, children: list) -> None:
        lhs = children[0].children[0]
        self._note_statement(lhs)
        after = children[1]
        for child in children[2:]:
            if isinstance(child, Token):  # the "|" between alternatives
                after = child
                continue
            tokens = child.children
            weight = tokens[-1] if tokens and tokens[-1].type == "WEIGHT" else None
            symbols = tuple(tokens[:-1] if weight is not None else tokens)
            self.alternatives.append(_Alternative(lhs, symbols, weight, after))

    # --- checks --------------------------------------------------------------------------
    def _check_declarations(self) -> None:
        at = self.first_statement
        if self.name is None:
            where = at or end_token(self.text)
            self.problem(
                where,
                lambda: (
                    "missing the `grammar NAME` line",
                    "add a line like `grammar mygrammar` as the first line (after any comments)",
                ),
            )
        if self.start is None:
            where = self.grammar_keyword or at or end_token(self.text)
            first_lhs = self.alternatives[0].lhs.value if self.alternatives else "S"
            self.problem(
                where,
                lambda: (
                    "missing the `start SYMBOL` line",
                    f"add a line like `start {first_lhs}` after the `grammar` line, naming the "
                    "start nonterminal",
                ),
            )
        if not self.alternatives:
            self.problem(
                end_token(self.text),
                lambda: ("the grammar has no rules", 'add rules like `S -> A "a" | "b"`'),
            )

    def _terminal(self, tok: Token) -> str | None:
        """A quoted terminal's text (escapes decoded), or None after recording a problem."""
        raw = tok.value
        if raw in self._terminal_cache:
            return self._terminal_cache[raw]
        name: str | None = None
        try:
            name = _unquote(raw)
        except _BadEscape as bad:
            offset = bad.offset
            self.problem(
                tok,
                lambda: (f"unknown escape {raw[offset : offset + 2]} in a terminal", ESCAPE_HINT),
                offset=offset,
            )
        else:
            if not name:
                name = None
                self.problem(
                    tok,
                    lambda: (
                        'an empty terminal ""',
                        "ε (the empty string) is not supported; remove it from the rule",
                    ),
                )
        self._terminal_cache[raw] = name
        return name

    def _terminals(self, nonterminals: dict[str, None]) -> tuple[str, ...]:
        """Declared order when declared, else order of first appearance in the rules."""
        used: dict[str, Token] = {}
        for alt in self.alternatives:
            for tok in alt.symbols:
                if tok.type == "TERMINAL":
                    name = self._terminal(tok)
                    if name is not None and name not in used:
                        used[name] = tok
        if self.declared is None:
            order = dict(used)
        else:
            order = dict(self.declared)
            for name, tok in used.items():
                if name not in order:
                    self._undeclared_terminal(name, tok, list(order))
        for name, tok in {**used, **order}.items():  # a declared one is named where declared
            if name in nonterminals:
                self.problem(
                    tok,
                    _said(
                        f"terminal {_quote(name)} has the same name as the nonterminal {name}",
                        "terminals and nonterminals must have different names; rename one",
                    ),
                )
        return tuple(order)

    def _undeclared_terminal(self, name: str, tok: Token, declared: list[str]) -> None:
        line = self.terminals_keyword.line if self.terminals_keyword else tok.line

        def explain() -> tuple[str, str]:
            close = difflib.get_close_matches(name, declared, n=1)
            mean = f"did you mean {_quote(close[0])}? " if close else ""
            return (
                f"terminal {_quote(name)} is not declared in the `terminals` line (line {line})",
                f"{mean}declared terminals fix the token order, so list "
                "every terminal there (or drop the `terminals` line)",
            )

        self.problem(tok, explain)

    def _rules(self, nonterminals: dict[str, None], terminals: tuple[str, ...]) -> tuple[Rule, ...]:
        rules: list[Rule] = []
        seen: dict[tuple[str, tuple[str, ...]], Token] = {}
        for alt in self.alternatives:
            rhs = self._rhs(alt, nonterminals, terminals)
            weight = self._weight(alt.weight)
            if rhs is None:
                continue
            if not rhs:
                self._empty_alternative(alt)
                continue
            key = (alt.lhs.value, rhs)
            where = alt.symbols[0]
            if key in seen:
                first = seen[key]
                self.problem(
                    where,
                    _said(
                        f"duplicate rule {_rule_text(key[0], key[1], terminals)} (the same rule "
                        f"is on line {first.line})",
                        "remove one of the two; to make a rule more likely, give "
                        "it a weight like [2]",
                    ),
                )
                continue
            seen[key] = where
            rules.append(Rule(alt.lhs.value, rhs, weight))
        if self.start is not None and nonterminals and self.start.value not in nonterminals:
            self._undefined(self.start, nonterminals, terminals, role="start symbol")
        return tuple(rules)

    def _rhs(
        self, alt: _Alternative, nonterminals: dict[str, None], terminals: tuple[str, ...]
    ) -> tuple[str, ...] | None:
        rhs: list[str] = []
        ok = True
        for tok in alt.symbols:
            if tok.type == "TERMINAL":
                name = self._terminal(tok)
                ok = ok and name is not None
            else:
                name = tok.value
                if name not in nonterminals:
                    self._undefined(tok, nonterminals, terminals, role="nonterminal")
                    ok = False
            rhs.append(name or "")
        return tuple(rhs) if ok else None

    def _undefined(
        self, tok: Token, nonterminals: dict[str, None], terminals: tuple[str, ...], role: str
    ) -> None:
        name = tok.value

        def explain() -> tuple[str, str]:
            close = difflib.get_close_matches(name, list(nonterminals), n=1, cutoff=0.5)
            if name in terminals:
                hint = f"did you mean the terminal {_quote(name)}? Terminals are quoted"
            elif close:
                hint = f"did you mean {close[0]}?"
            else:
                hint = f"add a rule `{name} -> ...`, or use a nonterminal that has rules"
            return f"undefined {role} {name}: no rule has it on its left side", hint

        self.problem(tok, explain)

    def _empty_alternative(self, alt: _Alternative) -> None:
        where = alt.weight or alt.after
        offset = 0 if alt.weight is not None else len(alt.after.value)
        lhs = alt.lhs.value
        self.problem(
            where,
            lambda: (
                f"empty right-hand side in a rule for {lhs}: ε-rules are not supported",
                "remove the empty alternative (an extra `|` or a `->` with nothing after it); if a "
                "symbol is optional, write one alternative with it and one without",
            ),
            offset=offset,
        )

    def _weight(self, tok: Token | None) -> float:
        if tok is None:
            return 1.0
        body = tok.value[1:-1].strip()
        problem = _weight_problem(body)
        if problem is None:
            return float(body)
        self.problem(tok, lambda: (problem, "a weight is a positive number, as in [0.5] or [2]"))
        return 1.0

    # --- reporting -----------------------------------------------------------------------
    def _first_problem(self) -> LocatedError:
        first = min(self.problems, key=lambda p: (p.line, p.col))
        message, hint = first.explain()
        more = len(self.problems) - 1
        if more:
            hint += f" ({more} more error{'s' if more > 1 else ''} after this one)"
        return self._located(first.line, first.col, (message, hint))

    def _located(self, line: int, col: int, what: tuple[str, str]) -> LocatedError:
        return LocatedError(what[0], location(self.text, self.file, line, col), what[1])


def _weight_problem(body: str) -> str | None:
    if not body:
        return "an empty weight []"
    if not re.fullmatch(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", body):
        return f"the weight [{clip(body)}] is not a number"
    value = float(body)
    if not math.isfinite(value):
        return f"the weight [{clip(body)}] is too large"
    if value <= 0:
        return f"the weight [{clip(body)}] is not positive"
    return None


def _said(message: str, hint: str) -> Callable[[], tuple[str, str]]:
    """A problem's (message, hint), worded already."""
    return lambda: (message, hint)


def _rule_text(lhs: str, rhs: tuple[str, ...], terminals: tuple[str, ...]) -> str:
    tset = set(terminals)
    return clip(f"{lhs} -> " + " ".join(_quote(s) if s in tset else s for s in rhs), 80)


def _header(text: str) -> tuple[str, ...]:
    """The comment lines before the first statement, without their `#` and one space."""
    header: list[str] = []
    for line in text.split("\n"):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            break
        body = stripped[1:]
        header.append(body[1:] if body.startswith(" ") else body)
    return tuple(header)


# --- terminals: quoting and escapes --------------------------------------------------------
_ESCAPE_OF = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_CHAR_OF = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r"}
_ESCAPE_RE = re.compile(r'\\(?:(["\\ntr])|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8}))')


class _BadEscape(Exception):
    def __init__(self, offset: int) -> None:
        self.offset = offset  # of the backslash, within the quoted token


def _unquote(raw: str) -> str:
    body = raw[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while (j := body.find("\\", i)) >= 0:
        out.append(body[i:j])
        m = _ESCAPE_RE.match(body, j)
        code = m and (m.group(2) or m.group(3) or m.group(4))
        if m is None or (code and int(code, 16) > 0x10FFFF):
            raise _BadEscape(j + 1)
        out.append(chr(int(code, 16)) if code else _CHAR_OF[m.group(1)])
        i = m.end()
    out.append(body[i:])
    return "".join(out)


def _quote(t: str) -> str:
    if t.isprintable() and '"' not in t and "\\" not in t:
        return f'"{t}"'
    return '"' + "".join(_escape(ch) for ch in t) + '"'


def _escape(ch: str) -> str:
    if ch in _ESCAPE_OF:
        return _ESCAPE_OF[ch]
    if ch.isprintable():
        return ch
    code = ord(ch)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


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
        " ".join(["terminals", *(_quote(t) for t in g.terminals)]),
        "",
    ]
    levels = g.levels if g.is_layered else None
    width = max(map(len, g.nonterminals), default=0)
    width = width if width <= 16 else 0
    previous = None
    for nt in g.nonterminals:
        level = levels.get(nt, previous) if levels else None  # unreachable: no level of its own
        if previous is not None and level != previous:
            lines.append("")  # a blank line between levels of a layered grammar
        previous = level
        alternatives = " | ".join(_alternative_text(g, r) for r in g.rules_of(nt))
        lines.append(f"{nt.ljust(width)} -> {alternatives}")
    return "\n".join(lines) + "\n"


def save_grammar(g: Grammar, path: str | Path) -> None:
    """Write the canonical text to `path` (UTF-8), replacing it."""
    text = format_grammar(g)
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as err:
        raise CfglabError(f"{path}: cannot write it ({err.strerror or err})") from None


def _alternative_text(g: Grammar, rule: Rule) -> str:
    text = " ".join(_quote(s) if g.is_terminal(s) else s for s in rule.rhs)
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
        *(("nonterminal", nt) for nt in g.nonterminals),
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
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for r in g.rules:
        problem = _rule_problem(g, r, nonterminals, seen)
        if problem:
            return f"rule {r.lhs} -> {' '.join(map(str, r.rhs))}: {problem}"
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
