"""The DSL's lexicon lines (implicit CFGs, Result 10): `bag "t" -> "a" "b" [2] "c"`.

A grammar file with bags is an implicit CFG: the quoted symbols of its rules are hidden terminals,
and each hidden terminal is observed as one token of its bag (weights optional, default 1, as
rule weights). The Grammar it builds is an ordinary CFG with one more unary level: each hidden
terminal is a nonterminal with rules `t -> token`, and the tokens are `Grammar.terminals`
(declared order when a `terminals` line lists them, else order of first appearance in the bags).
Every problem is located: an unknown terminal, a second bag for one terminal, an empty bag, a
token that is also a terminal of the rules (or a nonterminal), a token twice in one bag, a
terminal without a bag, a bad weight.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lark import Token

from cfglab.grammar.core import Rule
from cfglab.grammar.dsl_quote import quote

if TYPE_CHECKING:
    from cfglab.grammar.dsl_build import Builder


@dataclass(frozen=True)
class BagLine:
    terminal: Token  # the quoted hidden terminal
    arrow: Token  # the "->": where an empty bag is reported
    tokens: tuple[tuple[Token, Token | None], ...]  # (quoted token, weight or None)


@dataclass(frozen=True)
class Lexicon:
    tokens: tuple[str, ...]  # the observed tokens, in token-id order
    rules: tuple[Rule, ...]  # the unary rules hidden terminal -> token
    hidden: tuple[str, ...]  # the hidden terminals, in bag order


def bag_line(children: list) -> BagLine:
    keyword, terminal, arrow, *entries = children
    del keyword
    pairs = []
    for entry in entries:
        tok, *weight = entry.children
        pairs.append((tok, weight[0] if weight else None))
    return BagLine(terminal, arrow, tuple(pairs))


def build_lexicon(b: Builder, bags: list[BagLine], nonterminals: dict[str, None]) -> Lexicon:
    """The lexicon of the bag lines; problems are recorded on the builder."""
    used = b.rule_terminals()
    hidden: dict[str, Token] = {}
    rules: list[Rule] = []
    seen: dict[str, Token] = {}
    for bag in bags:
        name = b._terminal(bag.terminal)
        if name is None or not _new_bag(b, bag, name, hidden, used):
            continue
        hidden[name] = bag.terminal
        rules += _bag_rules(b, bag, name, used, nonterminals, seen)
    for name, tok in used.items():
        if name in nonterminals:
            b.problem(
                tok,
                _said(
                    f"terminal {quote(name)} has the same name as the nonterminal {name}",
                    "rename one of the two",
                ),
            )
        elif name not in hidden:
            b.problem(
                tok,
                _said(
                    f"terminal {quote(name)} has no bag (this grammar has a lexicon, "
                    "so every terminal needs one)",
                    f'add a line like `bag {quote(name)} -> "tok1" "tok2"`',
                ),
                whole=True,  # its bag may be on a line with a syntax error
            )
    return Lexicon(_token_order(b, seen), tuple(rules), tuple(hidden))


def _new_bag(
    b: Builder, bag: BagLine, name: str, hidden: dict[str, Token], used: dict[str, Token]
) -> bool:
    if name in hidden:
        first = hidden[name].line
        b.problem(
            bag.terminal,
            _said(
                f"a second bag for terminal {quote(name)} (the first is on line {first})",
                "merge the two bags into one line",
            ),
        )
        return False
    if name not in used:
        close = difflib.get_close_matches(name, list(used), n=1, cutoff=0.5)
        mean = f"did you mean {quote(close[0])}? " if close else ""
        b.problem(
            bag.terminal,
            _said(
                f"unknown terminal {quote(name)}: no rule uses it",
                f"{mean}a bag belongs to a terminal of the rules",
            ),
            whole=True,  # the rule using it may be on a line with a syntax error
        )
        return False
    if not bag.tokens:  # still its bag: the terminal is not also said to have none
        b.problem(
            bag.arrow,
            _said(
                f"an empty bag for terminal {quote(name)}",
                'list its observed tokens after `->`, as in "a" "b" [2]',
            ),
            offset=len(bag.arrow.value),
        )
    return True


def _bag_rules(
    b: Builder,
    bag: BagLine,
    name: str,
    used: dict[str, Token],
    nonterminals: dict[str, None],
    seen: dict[str, Token],
) -> list[Rule]:
    rules: list[Rule] = []
    in_bag: set[str] = set()
    for tok, weight in bag.tokens:
        token = b._terminal(tok)
        w = b._weight(weight)
        if token is None:
            continue
        if token in used:
            b.problem(
                tok,
                _said(
                    f"{quote(token)} is used both as a terminal (in the rules, line "
                    f"{used[token].line}) and as an observed token",
                    "rename the observed token; a bag's tokens are not terminals",
                ),
            )
        elif token in nonterminals:
            b.problem(
                tok,
                _said(
                    f"observed token {quote(token)} has the same name as the nonterminal {token}",
                    "rename one of the two",
                ),
            )
        elif token in in_bag:
            b.problem(
                tok,
                _said(
                    f"token {quote(token)} is twice in the bag of {quote(name)}",
                    "remove the repeated one; to make it likelier, weight it [2]",
                ),
            )
        else:
            in_bag.add(token)
            seen.setdefault(token, tok)
            rules.append(Rule(name, (token,), w))
    return rules


def _token_order(b: Builder, seen: dict[str, Token]) -> tuple[str, ...]:
    if b.declared is None:
        return tuple(seen)
    order = dict(b.declared)
    for name, tok in seen.items():
        if name not in order:
            b._undeclared_terminal(name, tok, list(order))
    return tuple(order)


def _said(message: str, hint: str) -> Callable[[], tuple[str, str]]:
    return lambda: (message, hint)
