"""The Grammar: symbols, rules, weights, and the same facts as integer arrays.

Symbols are plain strings. Terminal and nonterminal names live in separate namespaces that must
not overlap (the DSL refuses a terminal named like a nonterminal), so a rule's right side is a
tuple of names and the grammar knows which are terminals.

Integer ids (the array view, used by the sampler and the chart):
  terminals    0 .. T-1        in the grammar's declared order (this order is the token order
                               everywhere: samples, next-token rows, model vocabularies)
  nonterminals T .. T+N-1      in order of first appearance as a rule's left side
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

# Rules (alternatives) in one grammar, the bound every reader, the generator and `check` share:
# a grammar `check` accepts can always be saved and loaded again. The paper's largest has 444.
MAX_RULES = 50_000


@dataclass
class Tree:
    """One node of a derivation tree: a nonterminal with children, or a terminal leaf."""

    symbol: str
    children: list[Tree]
    rule: int = -1  # index into grammar.rules; -1 for a terminal leaf

    def leaves(self) -> list[str]:
        if not self.children:
            return [self.symbol]
        return [leaf for c in self.children for leaf in c.leaves()]


@dataclass(frozen=True)
class Rule:
    """One production `lhs -> rhs` with a positive weight (normalised per left side)."""

    lhs: str
    rhs: tuple[str, ...]
    weight: float = 1.0


@dataclass(frozen=True)
class GrammarArrays:
    """The grammar as arrays; rules are grouped by left side, in `Grammar.rules` order."""

    n_terminals: int  # T
    n_nonterminals: int  # N
    start: int  # symbol id of the start nonterminal
    rule_lhs: np.ndarray  # (R,) int32 symbol id of each rule's left side
    rule_len: np.ndarray  # (R,) int32 right-side length
    rule_rhs: np.ndarray  # (R, max_len) int32 symbol ids, padded with -1
    rule_prob: np.ndarray  # (R,) float64 weight / sum of weights of the same left side
    nt_first_rule: np.ndarray  # (N,) int32 index of each nonterminal's first rule
    nt_n_rules: np.ndarray  # (N,) int32 how many rules each nonterminal has

    def is_terminal(self, ids: np.ndarray | int) -> np.ndarray | bool:
        return np.asarray(ids) < self.n_terminals


@dataclass(frozen=True)
class Grammar:
    """A context-free grammar without ε-rules, optionally weighted (a PCFG).

    Rules are kept grouped by left side in order of first appearance, so two grammars with the
    same rules compare equal however their source files interleaved them.
    """

    name: str
    start: str
    terminals: tuple[str, ...]
    rules: tuple[Rule, ...]
    header: tuple[str, ...] = field(default=(), compare=False)  # leading comment lines
    source: str | None = field(default=None, compare=False)  # file it was read from
    # Implicit CFGs (Result 10): the hidden terminals, each a nonterminal whose rules are unary
    # `t -> token` (its bag, weights = the bag's weights); `terminals` are then the observed
    # tokens. Empty for an ordinary grammar. See cfglab.grammar.lexicon.
    hidden: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "terminals", tuple(self.terminals))
        object.__setattr__(self, "rules", _group_by_lhs(tuple(self.rules)))
        object.__setattr__(self, "header", tuple(self.header))
        object.__setattr__(self, "hidden", tuple(self.hidden))

    # --- symbols -------------------------------------------------------------------------
    @cached_property
    def nonterminals(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.lhs for r in self.rules))

    @cached_property
    def symbol_ids(self) -> dict[str, int]:
        """Name → id for terminals and nonterminals (namespaces are disjoint)."""
        ids = {t: i for i, t in enumerate(self.terminals)}
        ids.update({nt: len(self.terminals) + i for i, nt in enumerate(self.nonterminals)})
        return ids

    @cached_property
    def symbols(self) -> tuple[str, ...]:
        """Id → name, the inverse of `symbol_ids`."""
        return self.terminals + self.nonterminals

    def is_terminal(self, name: str) -> bool:
        return name in self._terminal_set

    @cached_property
    def _terminal_set(self) -> frozenset[str]:
        return frozenset(self.terminals)

    def rules_of(self, nonterminal: str) -> tuple[Rule, ...]:
        return self._rules_by_lhs.get(nonterminal, ())

    @cached_property
    def _rules_by_lhs(self) -> dict[str, tuple[Rule, ...]]:
        by: dict[str, list[Rule]] = {}
        for r in self.rules:
            by.setdefault(r.lhs, []).append(r)
        return {k: tuple(v) for k, v in by.items()}

    def rule_probability(self, rule: Rule) -> float:
        return rule.weight / self._weight_totals[rule.lhs]

    @cached_property
    def _weight_totals(self) -> dict[str, float]:
        """Each nonterminal's sum of weights, once (re-summing per rule is quadratic in fan-out)."""
        return {nt: sum(r.weight for r in rules) for nt, rules in self._rules_by_lhs.items()}

    def is_hidden(self, name: str) -> bool:
        """A hidden terminal of an implicit grammar (a nonterminal over a bag of tokens)."""
        return name in self._hidden_set

    @cached_property
    def _hidden_set(self) -> frozenset[str]:
        return frozenset(self.hidden)

    # --- levels --------------------------------------------------------------------------
    @cached_property
    def levels(self) -> dict[str, int] | None:
        """Level of each reachable nonterminal: the longest path from the start symbol.

        None when a cycle is reachable from the start (a recursive grammar has no levels).
        """
        order = _topological_order(self)
        if order is None:
            return None
        level = {self.start: 0}
        for nt in order:
            if nt not in level:
                continue
            for r in self.rules_of(nt):
                for s in r.rhs:
                    if not self.is_terminal(s):
                        level[s] = max(level.get(s, 0), level[nt] + 1)
        return level

    @cached_property
    def depth(self) -> int | None:
        """Levels from the start symbol down to the terminals (None when recursive)."""
        levels = self.levels
        if levels is None:
            return None
        return max(levels.values()) + 1

    @cached_property
    def is_layered(self) -> bool:
        """Every rule's right side sits entirely on the next level (terminals below the last)."""
        levels = self.levels
        if levels is None:
            return False
        depth = max(levels.values()) + 1
        for r in self.rules:
            if r.lhs not in levels:
                continue
            below = {depth if self.is_terminal(s) else levels[s] for s in r.rhs}
            if below != {levels[r.lhs] + 1}:
                return False
        return True

    # --- arrays --------------------------------------------------------------------------
    @cached_property
    def arrays(self) -> GrammarArrays:
        ids = self.symbol_ids
        n_rules = len(self.rules)
        max_len = max((len(r.rhs) for r in self.rules), default=1)
        rhs = np.full((n_rules, max_len), -1, dtype=np.int32)
        for i, r in enumerate(self.rules):
            rhs[i, : len(r.rhs)] = [ids[s] for s in r.rhs]
        nts = self.nonterminals
        counts = np.array([len(self.rules_of(nt)) for nt in nts], dtype=np.int32)
        first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int32)
        prob = np.array([self.rule_probability(r) for r in self.rules], dtype=np.float64)
        return GrammarArrays(
            n_terminals=len(self.terminals),
            n_nonterminals=len(nts),
            start=ids[self.start],
            rule_lhs=np.array([ids[r.lhs] for r in self.rules], dtype=np.int32),
            rule_len=np.array([len(r.rhs) for r in self.rules], dtype=np.int32),
            rule_rhs=rhs,
            rule_prob=prob,
            nt_first_rule=first,
            nt_n_rules=counts,
        )

    # --- tokens --------------------------------------------------------------------------
    def encode(self, tokens: list[str]) -> np.ndarray:
        """Terminal names → terminal ids (0..T-1); KeyError names the unknown token."""
        ids = self.symbol_ids
        return np.array(
            [ids[t] if t in self._terminal_set else _unknown(t) for t in tokens], dtype=np.int32
        )

    def decode(self, ids: np.ndarray | list[int]) -> list[str]:
        return [self.terminals[int(i)] for i in ids]


def _unknown(token: str) -> int:
    raise KeyError(token)


def _group_by_lhs(rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
    order = {lhs: i for i, lhs in enumerate(dict.fromkeys(r.lhs for r in rules))}
    return tuple(sorted(rules, key=lambda r: order[r.lhs]))  # sorted() is stable


def _topological_order(g: Grammar) -> list[str] | None:
    """Nonterminals reachable from the start, parents before children; None on a cycle."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    post: list[str] = []
    stack: list[tuple[str, int]] = [(g.start, 0)]
    # each nonterminal's children once (a repeat is already done when met again), not once per
    # visit: 10,000 alternatives on one nonterminal took 20 s that way
    child_lists: dict[str, list[str]] = {}
    while stack:
        nt, i = stack.pop()
        if i == 0:
            if state.get(nt) == 2:
                continue
            state[nt] = 1
        children = child_lists.get(nt)
        if children is None:
            terminal = g._terminal_set
            rhs = (s for r in g.rules_of(nt) for s in r.rhs if s not in terminal)
            children = child_lists[nt] = list(dict.fromkeys(rhs))
        if i < len(children):
            stack.append((nt, i + 1))
            child = children[i]
            if state.get(child) == 1:
                return None
            if state.get(child) != 2:
                stack.append((child, 0))
        else:
            state[nt] = 2
            post.append(nt)
    return post[::-1]


def yield_bounds(g: Grammar) -> tuple[dict[str, int], dict[str, int]]:
    """(shortest, longest) string every reachable symbol derives (terminals: 1), for a grammar
    without recursion; nonterminals children first (deepest level first). Recursive grammars
    (`g.levels is None`) have no such table: cfglab.analysis.checks bounds their lengths."""
    levels = g.levels
    if levels is None:
        raise ValueError(f"grammar {g.name} is recursive: its strings have no longest length table")
    shortest = dict.fromkeys(g.terminals, 1)
    longest = dict.fromkeys(g.terminals, 1)
    for nt in sorted(levels, key=lambda x: -levels[x]):
        rules = g.rules_of(nt)
        shortest[nt] = min(sum(shortest[s] for s in r.rhs) for r in rules)
        longest[nt] = max(sum(longest[s] for s in r.rhs) for r in rules)
    return shortest, longest


def find_rule(grammar: Grammar, text: str) -> int:
    """Index of the rule written as `LHS -> SYM SYM ...` (terminals may be quoted)."""
    from cfglab.errors import CfglabError

    lhs, _, rhs = text.partition("->")
    wanted = Rule(lhs.strip(), tuple(s.strip('"') for s in rhs.split()))
    for i, r in enumerate(grammar.rules):
        if (r.lhs, r.rhs) == (wanted.lhs, wanted.rhs):
            return i
    alternatives = " | ".join(" ".join(r.rhs) for r in grammar.rules_of(wanted.lhs))
    hint = f"; {wanted.lhs} has: {alternatives}" if alternatives else ""
    raise CfglabError(f"rule {text!r} is not in grammar {grammar.name}{hint}")
