"""The DSL's semantic half: a Lark parse tree → a Grammar, every problem located.

`Builder` walks the statements of a parsed grammar file (dsl.lark), checks declarations,
terminals, rules and weights, and reports every problem in file order in one error (one located
block each, see cfglab.errors.located_errors; the wording lives in dsl_errors). The reader in
dsl.py calls it after parsing, with the syntax errors it recovered from: those are listed too,
and then the checks that need the whole file (an undefined name, a missing line) are left out,
since the line that would have satisfied them may be the broken one.
"""

from __future__ import annotations

import difflib
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

from lark import Token, Tree

from cfglab.errors import MAX_LISTED, LocatedError, located_errors
from cfglab.grammar.core import Grammar, Rule
from cfglab.grammar.dsl_errors import (
    ESCAPE_HINT,
    SYNTAX_HINT,
    clip,
    end_token,
    location,
    position,
)
from cfglab.grammar.dsl_lexicon import BagLine, bag_line, build_lexicon
from cfglab.grammar.dsl_quote import BadEscape, quote, unquote


@dataclass(frozen=True)
class _Problem:
    """A semantic error found while building, explained when reported."""

    line: int
    col: int
    explain: Callable[[], tuple[str, str]]  # → (message, hint), built only when reported
    whole: bool = False  # needs every line of the file (so unsure after a syntax error)


@dataclass(frozen=True)
class _Alternative:
    lhs: Token
    symbols: tuple[Token, ...]  # NAME or TERMINAL tokens
    weight: Token | None
    after: Token  # the "->" or "|" just before it: where an empty alternative is


class Builder:
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
        self.bags: list[BagLine] = []  # lexicon lines (implicit CFGs), see dsl_lexicon

    def problem(
        self,
        at: Token,
        explain: Callable[[], tuple[str, str]],
        offset: int = 0,
        whole: bool = False,
    ) -> None:
        line, col = position(at)
        self.problems.append(_Problem(line, col + offset, explain, whole))

    # --- statements ----------------------------------------------------------------------
    def build(
        self, tree: Tree, source: str | None, syntax: tuple[LocatedError, ...] = ()
    ) -> Grammar:
        """The Grammar of the parsed statements, or one error listing every problem (with the
        `syntax` errors the parser recovered from, whose lines are not in `tree`)."""
        if not tree.children:
            if syntax:
                raise located_errors(syntax)
            raise self._located(
                1, 1, ("no grammar here: the text is empty or only comments", SYNTAX_HINT)
            )
        for statement in tree.children:
            getattr(self, "_" + statement.data)(statement.children)
        self._check_declarations()
        nonterminals = dict.fromkeys(a.lhs.value for a in self.alternatives)
        lexicon = build_lexicon(self, self.bags, nonterminals) if self.bags else None
        terminals = lexicon.tokens if lexicon else self._terminals(nonterminals)
        rules = self._rules(nonterminals, lexicon.hidden if lexicon else terminals)
        if self.problems or syntax:
            raise self._all_problems(syntax)
        assert self.name is not None and self.start is not None  # else a problem was recorded
        return Grammar(
            self.name.value,
            self.start.value,
            terminals,
            rules + (lexicon.rules if lexicon else ()),
            header=_header(self.text),
            source=source,
            hidden=lexicon.hidden if lexicon else (),
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

    def _bag_decl(self, children: list) -> None:
        self._note_statement(children[0])
        self.bags.append(bag_line(children))

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
                whole=True,
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
                whole=True,
            )
        if not self.alternatives:
            self.problem(
                end_token(self.text),
                lambda: ("the grammar has no rules", 'add rules like `S -> A "a" | "b"`'),
                whole=True,
            )

    def _terminal(self, tok: Token) -> str | None:
        """A quoted terminal's text (escapes decoded), or None after recording a problem."""
        raw = tok.value
        if raw in self._terminal_cache:
            return self._terminal_cache[raw]
        name: str | None = None
        try:
            name = unquote(raw)
        except BadEscape as bad:
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

    def rule_terminals(self) -> dict[str, Token]:
        """Each terminal the rules use, at its first use, in order of first use."""
        used: dict[str, Token] = {}
        for alt in self.alternatives:
            for tok in alt.symbols:
                if tok.type == "TERMINAL":
                    name = self._terminal(tok)
                    if name is not None and name not in used:
                        used[name] = tok
        return used

    def _terminals(self, nonterminals: dict[str, None]) -> tuple[str, ...]:
        """Declared order when declared, else order of first appearance in the rules."""
        used = self.rule_terminals()
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
                        f"terminal {quote(name)} has the same name as the nonterminal {name}",
                        "terminals and nonterminals must have different names; rename one",
                    ),
                )
        return tuple(order)

    def _undeclared_terminal(self, name: str, tok: Token, declared: list[str]) -> None:
        line = self.terminals_keyword.line if self.terminals_keyword else tok.line

        def explain() -> tuple[str, str]:
            close = difflib.get_close_matches(name, declared, n=1)
            mean = f"did you mean {quote(close[0])}? " if close else ""
            return (
                f"terminal {quote(name)} is not declared in the `terminals` line (line {line})",
                f"{mean}declared terminals fix the token order, so list "
                "every terminal there (or drop the `terminals` line)",
            )

        self.problem(tok, explain)

    def _rules(self, nonterminals: dict[str, None], terminals: tuple[str, ...]) -> tuple[Rule, ...]:
        rules: list[Rule] = []
        seen: dict[tuple[str, tuple[str, ...]], Token] = {}
        totals: dict[str, float] = {}
        weights: list[tuple[_Alternative, float]] = []
        for alt in self.alternatives:
            rhs = self._rhs(alt, nonterminals, terminals)
            weight = self._weight(alt.weight)
            self._add_weight(alt, weight, totals)
            weights.append((alt, weight))
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
        for alt, weight in weights:
            self._negligible_weight(alt, weight, totals[alt.lhs.value])
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
                hint = f"did you mean the terminal {quote(name)}? Terminals are quoted"
            elif close:
                hint = f"did you mean {close[0]}?"
            else:
                hint = f"add a rule `{name} -> ...`, or use a nonterminal that has rules"
            return f"undefined {role} {name}: no rule has it on its left side", hint

        self.problem(tok, explain, whole=True)

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

    def _add_weight(self, alt: _Alternative, weight: float, totals: dict[str, float]) -> None:
        """Sum the weights of alt's nonterminal; the weight whose sum overflows is the problem.

        Rule probabilities divide by this sum, so an infinite one makes every probability of
        the nonterminal 0 or NaN (and entropy, sampling and the chart meaningless)."""
        lhs = alt.lhs.value
        before = totals.get(lhs, 0.0)
        total = totals[lhs] = before + weight
        if math.isfinite(total) or not math.isfinite(before) or alt.weight is None:
            return
        self.problem(
            alt.weight,
            _said(
                f"the weights of {lhs}'s rules add up past the largest float "
                f"(about {_FLOAT_MAX:.3g}), so its rule probabilities cannot be computed",
                "only ratios of weights matter: scale all of this nonterminal's weights "
                "down (e.g. [1e300] → [1])",
            ),
        )

    def _negligible_weight(self, alt: _Alternative, weight: float, total: float) -> None:
        """A weight so small beside its siblings' that its rule's probability rounds to 0: the
        rule could never be sampled, and log-probabilities of the chart and the entropy would
        be -inf for a rule the grammar says exists."""
        if alt.weight is None or not math.isfinite(total) or weight / total > 0:
            return
        lhs = alt.lhs.value
        self.problem(
            alt.weight,
            _said(
                f"the weight [{weight:g}] is negligible beside the other weights of {lhs}'s "
                f"rules (they add up to {total:.3g}): its rule's probability rounds to 0",
                "only ratios of weights matter: raise this weight (or lower the others) to "
                "within ~1e300 of them, or remove the rule",
            ),
        )

    # --- reporting -----------------------------------------------------------------------
    def _all_problems(self, syntax: tuple[LocatedError, ...]) -> LocatedError:
        """Every problem in one error, in file order. After a syntax error the whole-file checks
        are left out (their missing line may be the broken one) and the count says so."""
        kept = sorted(
            (p for p in self.problems if not (syntax and p.whole)), key=lambda p: (p.line, p.col)
        )
        # explain only the problems that can be listed: a file can have thousands
        listed = [self._located(p.line, p.col, p.explain()) for p in kept[:MAX_LISTED]]
        note = self._left_out(syntax, kept)
        return located_errors([*syntax, *listed], note, more=len(kept) - len(listed))

    def _left_out(self, syntax: tuple[LocatedError, ...], kept: list[_Problem]) -> str:
        if not syntax or len(kept) == len(self.problems):
            return ""
        return "undefined names and missing lines are checked once the syntax errors are fixed"

    def _located(self, line: int, col: int, what: tuple[str, str]) -> LocatedError:
        return LocatedError(what[0], location(self.text, self.file, line, col), what[1])


_FLOAT_MAX = sys.float_info.max


def _weight_problem(body: str) -> str | None:
    if not body:
        return "an empty weight []"
    if not re.fullmatch(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", body):
        return f"the weight [{clip(body)}] is not a number"
    value = float(body)
    if not math.isfinite(value):
        return f"the weight [{clip(body)}] is too large"
    if value == 0 and re.search(r"[1-9]", body.split("e")[0].split("E")[0]):
        return f"the weight [{clip(body)}] is too small: it rounds to 0"
    if value <= 0:
        return f"the weight [{clip(body)}] is not positive"
    return None


def _said(message: str, hint: str) -> Callable[[], tuple[str, str]]:
    """A problem's (message, hint), worded already."""
    return lambda: (message, hint)


def _rule_text(lhs: str, rhs: tuple[str, ...], terminals: tuple[str, ...]) -> str:
    tset = set(terminals)
    return clip(f"{lhs} -> " + " ".join(quote(s) if s in tset else s for s in rhs), 80)


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
