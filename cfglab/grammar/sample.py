"""Vectorised sampling with tree labels: every token's nonterminal ancestors and NT boundaries.

All strings of a batch are expanded together, one tree depth per round: the frontier of every
string is a flat array of symbol ids, each nonterminal picks a rule by one vectorised draw, and the
children replace it with `np.repeat` arithmetic. No per-token Python recursion happens anywhere.

Labels are by tree depth d (the root is depth 0). For a layered grammar depth equals level. For
token i at depth d:
  ancestors[d, i]  nonterminal index (0..N-1, into `grammar.nonterminals`) of its depth-d ancestor,
                   or -1 where the token's path ended above depth d (a terminal reached early)
  boundaries[d, i] True iff token i is the last token of its depth-d ancestor (b_l(i) in the paper)
  rules[d, i]      the rule index (into `grammar.rules`) that ancestor expanded with, or -1
Derived (Part 1 §5, the attention statistics):
  b_sharp[i]       b♯(i), the most ancestral depth d at which token i ends a nonterminal
                   (the smallest d with boundaries[d, i]), -1 where i ends none: the disjoint
                   classes of NT-ends
  ancestor_index[d, i]  p_d(i), the index (0, 1, ...) of i's depth-d ancestor among the string's
                   depth-d nodes from the left, -1 where the token's path ended above depth d

Recursive grammars: a derivation is abandoned once its frontier passes `max_length` tokens or
its tree passes `max_depth` rounds, and the string is drawn again (rejection). The samples then
follow the grammar's distribution conditioned on the bounds; `Samples.rejected` says how often.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from cfglab.analysis.graph import CAP, lowest_height, shortest
from cfglab.errors import CfglabError
from cfglab.grammar.core import Grammar, GrammarArrays, Tree

DEFAULT_MAX_LENGTH = 4096
DEFAULT_MAX_DEPTH = 64
_MAX_REDRAW_ROUNDS = 50
_WIDE = 64  # more alternatives than this on a nonterminal: choose rules by binary search


@dataclass
class Samples:
    """n strings, concatenated, with per-token labels for every tree depth."""

    grammar: Grammar
    tokens: np.ndarray  # (total,) int32 terminal ids 0..T-1
    offsets: np.ndarray  # (n+1,) int64; string i is tokens[offsets[i]:offsets[i+1]]
    ancestors: np.ndarray  # (depth, total) int32 nonterminal index, -1 where none
    boundaries: np.ndarray  # (depth, total) bool
    rules: np.ndarray  # (depth, total) int32 rule index of the depth-d ancestor, -1 where none
    rejected: int = 0  # derivations abandoned at the bounds and drawn again

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def b_sharp(self) -> np.ndarray:
        """(total,) int32: the most ancestral depth at which each token ends a nonterminal."""
        ends = self.boundaries
        first = ends.argmax(axis=0).astype(np.int32)
        return np.where(ends.any(axis=0), first, np.int32(-1))

    @property
    def ancestor_index(self) -> np.ndarray:
        """(depth, total) int32: p_d(i), counted within each string (-1 where no ancestor)."""
        ends = self.boundaries.astype(np.int64)
        before = np.cumsum(ends, axis=1) - ends  # depth-d ends strictly before each token
        string_of = np.repeat(np.arange(len(self)), self.lengths)
        start = before[:, self.offsets[:-1]][:, string_of]
        return np.where(self.ancestors >= 0, before - start, -1).astype(np.int32)

    @property
    def depth(self) -> int:
        return self.ancestors.shape[0]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def string(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    def strings(self) -> list[np.ndarray]:
        return np.split(self.tokens, self.offsets[1:-1])

    def head(self, n: int) -> Samples:
        """The first n strings with their labels."""
        n = min(n, len(self))
        end = int(self.offsets[n])
        return replace(
            self,
            tokens=self.tokens[:end],
            offsets=self.offsets[: n + 1],
            ancestors=self.ancestors[:, :end],
            boundaries=self.boundaries[:, :end],
            rules=self.rules[:, :end],
        )

    def labels(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(ancestors, boundaries) of string i, each (depth, len)."""
        lo, hi = self.offsets[i], self.offsets[i + 1]
        return self.ancestors[:, lo:hi], self.boundaries[:, lo:hi]

    def tree(self, i: int) -> Tree:
        """Rebuild string i's derivation tree from its labels."""
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        return _build_tree(self, lo, hi, 0)

    def uses_rule(self, rule: int) -> np.ndarray:
        """(n,) bool: which strings' trees expand some node with `rule`."""
        hit = (self.rules == rule).any(axis=0)
        return np.logical_or.reduceat(hit, self.offsets[:-1]) & (self.lengths > 0)


def sample(
    grammar: Grammar,
    n: int,
    seed: int | np.random.Generator = 0,
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Samples:
    """Draw n strings from the grammar (rules chosen by their weights), reproducibly per seed."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    arrays = grammar.arrays
    tables = _Tables(
        _cumulative_probs(arrays),
        _per_symbol(grammar, shortest(grammar), terminal=1),
        _per_symbol(grammar, lowest_height(grammar), terminal=0),
    )
    parts: list[_Draw] = []
    rejected, missing = 0, n
    for _ in range(_MAX_REDRAW_ROUNDS):
        draw = _draw(arrays, tables, missing, rng, max_length, max_depth)
        parts.append(draw)
        rejected += missing - draw.n_strings
        missing -= draw.n_strings
        if missing == 0:
            return _assemble(grammar, parts, rejected)
    raise CfglabError(
        f"sampling {grammar.name}: fewer than {n} of the derivations stayed within "
        f"max_length={max_length} and max_depth={max_depth} after {_MAX_REDRAW_ROUNDS} rounds "
        f"({rejected} abandoned); the grammar's strings are too long for these bounds"
    )


@dataclass(frozen=True)
class _Tables:
    """What every redraw round of one `sample` call shares, computed once."""

    cum: np.ndarray  # _cumulative_probs
    shortest: np.ndarray  # (symbols,) float64 shortest yield of each symbol id (terminals: 1)
    height: np.ndarray  # (symbols,) float64 least tree height of each symbol id (terminals: 0)


def _per_symbol(grammar: Grammar, value: dict[str, int], terminal: int) -> np.ndarray:
    """A nonterminal figure (shortest yield, least height) by symbol id, with terminals at
    `terminal`; unproductive nonterminals at CAP (they never finish)."""
    out = np.full(len(grammar.symbols), float(terminal))
    for nt in grammar.nonterminals:
        out[grammar.symbol_ids[nt]] = value.get(nt, CAP)
    return out


@dataclass
class _Draw:
    n_strings: int
    tokens: np.ndarray
    string_of: np.ndarray  # (total,) which string each token belongs to, nondecreasing
    ancestors: np.ndarray  # (depth of this draw, total)
    boundaries: np.ndarray
    rules: np.ndarray


def _choose_rules(
    a: GrammarArrays, cum: np.ndarray, nts: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """One rule per nonterminal occurrence, by weight: inverse-CDF within the lhs's rule block."""
    first = a.nt_first_rule[nts - a.n_terminals]
    count = a.nt_n_rules[nts - a.n_terminals]
    u = rng.random(len(nts))
    rows = nts - a.n_terminals
    if cum.shape[1] <= _WIDE:
        k = (u[:, None] >= cum[rows]).sum(axis=1)
    else:  # the same count by binary search per nonterminal: no (occurrences, width) array
        k = np.empty(len(nts), dtype=np.int64)
        for row in np.unique(rows):
            at = rows == row
            k[at] = np.searchsorted(cum[row], u[at], side="right")  # rows are nondecreasing
    return first + np.minimum(k, count - 1)


def _cumulative_probs(a: GrammarArrays) -> np.ndarray:
    """(N, max_rules) cumulative rule probabilities per nonterminal, padded with 1.0."""
    width = int(a.nt_n_rules.max(initial=1))
    cum = np.ones((a.n_nonterminals, width))
    for nt in range(a.n_nonterminals):
        lo, k = a.nt_first_rule[nt], a.nt_n_rules[nt]
        cum[nt, :k] = np.cumsum(a.rule_prob[lo : lo + k])
    cum[:, -1] = 1.0 + 1e-12  # never step past the last rule through rounding
    return cum


def _draw(
    a: GrammarArrays,
    tables: _Tables,
    n: int,
    rng: np.random.Generator,
    max_length: int,
    max_depth: int,
) -> _Draw:
    """Expand n start symbols to terminals; drop derivations that break the bounds."""
    T, R = a.n_terminals, len(a.rule_len)
    cum = tables.cum
    # Terminals get identity pseudo-rules R+t (t -> t) so one code path expands every node.
    rule_len = np.concatenate([a.rule_len, np.ones(T, dtype=np.int32)])
    width = a.rule_rhs.shape[1]
    rhs = np.concatenate([a.rule_rhs, np.full((T, width), -1, np.int32)])
    rhs[R + np.arange(T), 0] = np.arange(T)
    rhs = rhs.ravel()
    frontier = np.full(n, a.start, dtype=np.int32)
    owner = np.arange(n, dtype=np.int32)  # string index of each frontier node
    rounds: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    alive = np.ones(n, dtype=bool)
    for depth in range(max_depth + 1):
        is_nt = frontier >= T
        if not is_nt.any():
            break
        rule = (frontier + R).astype(np.int32)
        rule[is_nt] = _choose_rules(a, cum, frontier[is_nt], rng)
        n_children = rule_len[rule]
        parent = np.repeat(np.arange(len(frontier), dtype=np.int32), n_children)
        starts = (np.cumsum(n_children) - n_children).astype(np.int32)
        pos = np.arange(len(parent), dtype=np.int32) - starts[parent]
        rule_of_child = rule[parent]
        child = rhs[rule_of_child * width + pos]
        is_last = pos == rule_len[rule_of_child] - 1
        owner = owner[parent]
        nt_index = np.where(is_nt, frontier - T, -1)
        rule[~is_nt] = -1
        # a derivation whose frontier's shortest yields already pass max_length is abandoned
        # now, not after growing to max_length tokens (C0 -> C1 C1 ... 30 deep: 2^30)
        floor = tables.shortest[child]
        if floor.sum() > max_length:
            alive &= np.bincount(owner, weights=floor, minlength=n) <= max_length
        # likewise one whose frontier holds a nonterminal too high to finish within max_depth
        # rounds (a unit chain 100 long under a cfg3 nonterminal: every string through it grew
        # to full length and ran all max_depth rounds, 50 redraws over, before being dropped)
        too_high = tables.height[child] > max_depth - depth
        if too_high.any():
            alive[owner[too_high]] = False
        if not alive.all():  # stop expanding abandoned derivations (recursion can explode)
            keep = alive[owner]
            parent, is_last, child, owner = parent[keep], is_last[keep], child[keep], owner[keep]
        rounds.append((nt_index, rule, parent, is_last))
        frontier = child
    else:
        alive &= np.bincount(owner[frontier >= T], minlength=n) == 0
    return _labels(n, frontier, owner, rounds, alive)


def _labels(
    n: int, tokens: np.ndarray, owner: np.ndarray, rounds: list, alive: np.ndarray
) -> _Draw:
    """Trace every token up through the rounds' parent links to label it at each depth."""
    keep = alive[owner]
    idx = np.flatnonzero(keep).astype(np.int32)  # earlier rounds hold nodes of dropped strings
    depth, total = len(rounds), len(idx)
    ancestors = np.empty((depth, total), dtype=np.int32)
    boundaries = np.empty((depth, total), dtype=bool)
    rules = np.empty((depth, total), dtype=np.int32)
    last = np.ones(total, dtype=bool)
    for d in range(depth - 1, -1, -1):
        nt_index, rule, parent, is_last = rounds[d]
        last &= is_last[idx]  # last of every node between depth d and the token
        idx = parent[idx]
        np.take(nt_index, idx, out=ancestors[d])
        np.take(rule, idx, out=rules[d])
        np.logical_and(last, ancestors[d] >= 0, out=boundaries[d])
    renumber = np.cumsum(alive) - 1
    return _Draw(
        int(alive.sum()), tokens[keep], renumber[owner[keep]], ancestors, boundaries, rules
    )


def _assemble(grammar: Grammar, parts: list[_Draw], rejected: int) -> Samples:
    depth = max(p.ancestors.shape[0] for p in parts)

    def stack(field: str, fill: int | bool) -> np.ndarray:
        blocks = [getattr(p, field) for p in parts]
        blocks = [
            np.pad(b, ((0, depth - b.shape[0]), (0, 0)), constant_values=fill)
            if b.shape[0] < depth
            else b
            for b in blocks
        ]
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)

    counts = np.concatenate([np.bincount(p.string_of, minlength=p.n_strings) for p in parts])
    tokens = parts[0].tokens if len(parts) == 1 else np.concatenate([p.tokens for p in parts])
    return Samples(
        grammar=grammar,
        tokens=tokens.astype(np.int32, copy=False),
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        ancestors=stack("ancestors", -1),
        boundaries=stack("boundaries", False),
        rules=stack("rules", -1),
        rejected=rejected,
    )


def _build_tree(s: Samples, lo: int, hi: int, d: int) -> Tree:
    """The depth-d node spanning tokens [lo, hi) (a single leaf when its path ended)."""
    g = s.grammar
    if d >= s.depth or s.ancestors[d, lo] < 0:
        return Tree(g.terminals[int(s.tokens[lo])], [])
    node = Tree(g.nonterminals[int(s.ancestors[d, lo])], [], int(s.rules[d, lo]))
    start = lo
    for i in range(lo, hi):
        child_ends = d + 1 >= s.depth or s.ancestors[d + 1, i] < 0 or s.boundaries[d + 1, i]
        if child_ends:
            node.children.append(_build_tree(s, start, i + 1, d + 1))
            start = i + 1
    return node
