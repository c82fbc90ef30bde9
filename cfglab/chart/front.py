"""The exact chart: membership, parse counts, probabilities, repairs and next-token truth.

One dynamic program — the inside recurrence, "a span's value is the semiring sum over rules and
split points of the semiring product of its children's values" — run over the semirings of
`cfglab.chart.semiring`:

    accepts(strings)             boolean        np.ndarray[bool]       (n,)
    count_parses(strings)        counting       list[int]              exact; big ints when needed
    log_inside(strings)          log_inside     np.ndarray[float64]    (n,) log P(string), -inf if
                                                                       not in the language
    min_substitutions(strings,   min_plus       list[Repair]           fewest token substitutions
      editable=None)                                                   and one repaired string
                                                                       (editable[i]: only the
                                                                       first k tokens may change)
    next_token_distributions(s)  log_inside +   np.ndarray (len+1, 1+T) row k = P(token k |
                                 forward pass                           tokens[:k]) over
                                                                       [EOS, t_0 .. t_{T-1}]
    next_token_batch(strings)    the same for many strings
    parse_trees(string, limit)   boolean chart read back top-down: up to `limit` Trees
    derivable_spans(strings)     boolean        every (nonterminal, start, end) derivable on its own
    verify(strings)              list[Verdict(valid, parses, substitutions)]

Strings are sequences of terminal ids (0..T-1, the grammar's declared order); `Grammar.encode`
makes them from names. Rule weights are normalised per left side (a PCFG).

Three schedules of the same recurrence, chosen by the grammar:
  * non-recursive grammars (the paper's): sparse.py — only derivable spans, level by level,
    all strings of a batch at once. Strings longer than the grammar's longest string are
    rejected without work.
  * min-plus over a non-recursive grammar: window.py — dense arrays over bounded span lengths
    (nearly every span is derivable at some price), after a sparse pass with budget 1 has
    settled the strings one substitution away.
  * recursive grammars: general.py — CKY by span length over the binarised grammar with
    unit-rule closures, O(n³); strings are limited to `GENERAL_MAX_TOKENS`.

Next-token rows: EOS is P(string == tokens[:k]); a row of zeros means tokens[:k] is not a prefix
of any string of the language (the conditional distribution does not exist). The forward pass
counts a pending right sibling as finishing with probability 1, which is exact for consistent
PCFGs: every non-recursive grammar, and recursive ones whose weights leak no mass into endless
derivations. For a leaking recursive PCFG the rows are normalised but only approximate.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any, NamedTuple

import numpy as np

from cfglab.chart import general as chart_general
from cfglab.chart import sparse as chart_sparse
from cfglab.chart import window as chart_window
from cfglab.chart.budget import SparseBudgetError
from cfglab.chart.semiring import (
    BIG_COUNTING,
    BOOLEAN,
    COUNTING,
    EXACT_FLOAT_LIMIT,
    LOG_INSIDE,
    MIN_PLUS,
    Semiring,
)
from cfglab.errors import CfglabError
from cfglab.grammar.core import Grammar, Tree

GENERAL_MAX_TOKENS = 400  # recursive grammars: the O(n³) chart's bound on one string
_BATCH_TOKENS = 100_000  # strings per sparse batch are grouped up to this many tokens
# Repairs: one substitution is first looked for among the last tokens up to where the prefix
# dies (16: 95 % of one-flip cfg3f strings; the rest take a second, wider pass).
ONE_EDIT_WINDOW = 16

StringLike = Sequence[int] | np.ndarray


class Repair(NamedTuple):
    """The fewest substitutions making a string valid, and one valid string that achieves it.

    `substitutions` is None when no substitution can help: no string of the language has this
    length (substitutions keep the length), or none differs from it only where edits are
    allowed. Then `repaired` is None too.
    """

    substitutions: int | None
    repaired: np.ndarray | None


@dataclass(frozen=True)
class Verdict:
    valid: bool
    parses: int | None  # None: infinitely many (a unit cycle)
    substitutions: int | None


class Chart:
    """Precompiled chart tables for one grammar; reusable across calls.

    `general=True` forces the O(n³) chart of recursive grammars onto any grammar (a cross-check).
    """

    def __init__(self, grammar: Grammar, general: bool = False) -> None:
        self.grammar = grammar
        self.n_terminals = len(grammar.terminals)
        self.recursive = general or grammar.levels is None
        if self.recursive:
            self._general = chart_general.GeneralTables.build(grammar)
            self._reading = chart_sparse.SparseTables.plain(grammar)
            self.max_length: int | None = None
        else:
            self._sparse = chart_sparse.SparseTables.build(grammar)
            self._lengths = chart_window.yield_lengths(self._sparse)
            self._reading = self._sparse
            self.max_length = self._sparse.max_yield
        # rule completions computed by the sparse passes so far: a machine-independent measure of
        # the chart's cost (cfglab.analysis.ambiguity budgets it)
        self.work = 0
        self.work_limit: int | None = None  # past it a sparse pass raises WorkBudgetError

    # --- the semirings, string by string ---------------------------------------------------
    def accepts(self, strings: Sequence[StringLike]) -> np.ndarray:
        """Membership of each string."""
        return np.array([v is not None for v in self._root_values(strings, BOOLEAN)], dtype=bool)

    def count_parses(self, strings: Sequence[StringLike]) -> list[int]:
        """Exact number of parse trees of each string (0 outside the language)."""
        counts = self._root_values(strings, COUNTING, check_exact=True)
        return [0 if c is None else int(c) for c in counts]

    def log_inside(self, strings: Sequence[StringLike], power: float = 1.0) -> np.ndarray:
        """log P(string) under the PCFG (rule weights normalised per left side); -inf outside.

        With `power` β: log Σ_t P(t)^β over the string's parse trees t (β = 1: log P(string)).
        Its derivative in β at 1 is E[log P(t) | string], which gives the entropy of the posterior
        over trees (cfglab.analysis.entropy).
        """
        sr = LOG_INSIDE if power == 1.0 else replace(LOG_INSIDE, power=power)
        vals = self._root_values(strings, sr)
        return np.array([-np.inf if v is None else float(v) for v in vals])

    def min_substitutions(
        self, strings: Sequence[StringLike], editable: Sequence[int] | None = None
    ) -> list[Repair]:
        """Fewest token substitutions that make each string valid, with a repaired string.

        editable[i] = k allows substitutions only among the first k tokens of string i.
        """
        return self._min_substitutions(self._check(strings), editable, repaired=True)

    def _min_substitutions(
        self, strings: list[np.ndarray], editable: Sequence[int] | None, repaired: bool
    ) -> list[Repair]:
        """min_substitutions; without `repaired`, the counts only (no tree is read back)."""
        edit: list[int | None] = (
            [None] * len(strings) if editable is None else [int(k) for k in editable]
        )
        if len(edit) != len(strings):
            raise ValueError("editable needs one prefix length per string")
        out: list[Repair | None] = [None] * len(strings)
        todo = []
        for i, s in enumerate(strings):
            if len(s) == 0 or (self.max_length is not None and len(s) > self.max_length):
                out[i] = Repair(None, None)
            else:
                todo.append(i)
        if not self.recursive:
            todo = self._repairs_within_one(strings, edit, todo, out, repaired)
        for i in todo:
            out[i] = self._repair(strings[i], edit[i], repaired)
        return out  # type: ignore[return-value]

    def verify(self, strings: Sequence[StringLike]) -> list[Verdict]:
        """Membership, parse count and substitutions of each string (repairs only where needed)."""
        strings = self._check(strings)
        try:
            counts: list[int | None] = list(self.count_parses(strings))
        except chart_general.InfiniteParsesError:
            counts = [None if ok else 0 for ok in self.accepts(strings)]
        valid = [c is None or c > 0 for c in counts]
        bad = [i for i, ok in enumerate(valid) if not ok]
        costs = self._min_substitutions([strings[i] for i in bad], None, repaired=False)
        repairs = dict(zip(bad, costs))
        return [
            Verdict(ok, c, 0 if ok else repairs[i].substitutions)
            for i, (ok, c) in enumerate(zip(valid, counts))
        ]

    # --- next-token truth --------------------------------------------------------------------
    def next_token_distributions(self, string: StringLike) -> np.ndarray:
        """(len+1, 1+T): row k is P(token k | tokens[:k]) over [EOS, t_0, ..., t_{T-1}]."""
        return self.next_token_batch([string])[0]

    def next_token_batch(self, strings: Sequence[StringLike]) -> list[np.ndarray]:
        strings = self._check(strings)
        if self.recursive:
            return [self._next_general(s) for s in strings]
        out: list[np.ndarray] = []
        for chunk in _chunks(strings):
            out.extend(_in_halves(self._next_sparse, chunk))
        return out

    def _next_sparse(self, strings: list[np.ndarray]) -> list[np.ndarray]:
        t = self._sparse
        batch = chart_sparse.Batch.of(strings)
        chart = self._sparse_inside(batch, LOG_INSIDE)
        sym, pos, val = chart_sparse.forward(t, batch, chart)
        logits = np.full((batch.width, 1 + self.n_terminals), -np.inf)
        logits[pos, 1 + sym] = val
        root = np.flatnonzero(chart.sym == t.start)
        from_base = np.isin(chart.start[root], batch.base)
        logits[chart.end[root[from_base]], 0] = chart.val[root[from_base]]
        rows = _normalise(logits)
        return [rows[b : b + n + 1] for b, n in zip(batch.base, batch.length)]

    def _next_general(self, s: np.ndarray) -> np.ndarray:
        self._general_bound(s)
        t = self._general
        log_in = chart_general.inside(t, s, LOG_INSIDE)
        f = chart_general.forward(t, s, log_in)
        logits = np.full((len(s) + 1, 1 + self.n_terminals), -np.inf)
        logits[:, 1:] = f[: self.n_terminals].T
        logits[1:, 0] = log_in[t.start, 0, 1 : len(s) + 1]
        return _normalise(logits)

    # --- label posteriors ---------------------------------------------------------------------
    def posteriors(self, strings: Sequence[StringLike], prefix: bool = False) -> list:
        """Exact posteriors of every token's ancestors and NT-ends (`chart.posterior.Posterior`).

        Given each whole string, or with prefix=True given the tokens up to each token (every
        valid completion weighed in). None where the string is not in the language (with
        prefix=True: not a prefix of any string). Non-recursive grammars only.
        """
        from cfglab.chart import posterior

        if self.recursive:
            raise CfglabError(
                f"grammar {self.grammar.name} is recursive: label posteriors need a "
                "non-recursive grammar (its nonterminals have levels)"
            )
        tables = self.__dict__.get("_posterior_tables")
        if tables is None:
            tables = self.__dict__["_posterior_tables"] = posterior.PosteriorTables(self._sparse)
        strings = self._check(strings)
        run = posterior.prefixes if prefix else posterior.whole_string
        out: list = [None] * len(strings)
        idx = [i for i, s in enumerate(strings) if 0 < len(s) <= (self.max_length or 0)]
        for chunk in _chunks(idx, key=lambda i: len(strings[i]), limit=posterior.BATCH_TOKENS):
            for i, post in zip(chunk, run(tables, [strings[i] for i in chunk])):
                out[i] = post
        return out

    # --- trees ---------------------------------------------------------------------------------
    def parse_trees(self, string: StringLike, limit: int = 2) -> list[Tree]:
        """Up to `limit` distinct parse trees of the string (none if it is not in the language)."""
        (s,) = self._check([string])
        if len(s) == 0 or (self.max_length is not None and len(s) > self.max_length):
            return []
        chart = self._spanset(s, BOOLEAN)
        reader = chart_sparse.TreeReader(self._reading, chart)
        with _deep_trees(len(s)):
            return list(islice(reader.trees(self._reading.start, 0, len(s)), limit))

    def derivable_spans(self, strings: Sequence[StringLike]) -> list[np.ndarray]:
        """Per string, an (m, 3) array of (nonterminal index into grammar.nonterminals, start,
        end): every span [start, end) that some nonterminal derives, on its own, whether or not
        a parse of the whole string uses it (the string's local readings)."""
        strings = self._check(strings)
        if self.recursive:
            return [self._general_spans(s) for s in strings]
        out = []
        for chunk in _chunks(strings):
            out.extend(_in_halves(self._sparse_spans, chunk))
        return out

    def _sparse_spans(self, strings: list[np.ndarray]) -> list[np.ndarray]:
        t, T = self._sparse, self.n_terminals
        own = np.array([self.grammar.symbol_ids[name] - T for name in t.names[T:]], dtype=np.int64)
        batch = chart_sparse.Batch.of(strings)
        chart = self._sparse_inside(batch, BOOLEAN)
        nt = chart.sym >= T
        which = np.searchsorted(batch.base, chart.start[nt], "right") - 1
        rows = np.stack(
            [
                own[chart.sym[nt] - T],
                chart.start[nt] - batch.base[which],
                chart.end[nt] - batch.base[which],
            ],
            axis=1,
        )
        order = np.argsort(which, kind="stable")
        cuts = np.searchsorted(which[order], np.arange(1, len(strings)))
        return np.split(rows[order], cuts)

    def _general_spans(self, s: np.ndarray) -> np.ndarray:
        if len(s) == 0:
            return np.zeros((0, 3), dtype=np.int64)
        self._general_bound(s)
        v = chart_general.inside(self._general, s, BOOLEAN)
        v = v[self.n_terminals : self._reading.n_symbols]
        nt, start, length = np.nonzero(v)
        return np.stack([nt, start, start + length], axis=1).astype(np.int64)

    # --- internals -----------------------------------------------------------------------------
    def _sparse_inside(
        self, batch: chart_sparse.Batch, sr: Semiring, **options: Any
    ) -> chart_sparse.SpanSet:
        """sparse.inside over this grammar's tables, its cost added to `work` (and bounded by
        `work_limit`)."""
        left = None if self.work_limit is None else max(self.work_limit - self.work, 0)
        chart = chart_sparse.inside(self._sparse, batch, sr, max_work=left, **options)
        self.work += chart.work
        return chart

    def _check(self, strings: Sequence[StringLike]) -> list[np.ndarray]:
        out = []
        for i, s in enumerate(strings):
            a = np.asarray(s, dtype=np.int64).reshape(-1)
            if len(a) and (a.min() < 0 or a.max() >= self.n_terminals):
                raise ValueError(f"string {i}: terminal ids must lie in 0..{self.n_terminals - 1}")
            out.append(a)
        return out

    def _general_bound(self, s: np.ndarray) -> None:
        if len(s) > GENERAL_MAX_TOKENS:
            raise CfglabError(
                f"a string of {len(s)} tokens is too long for the chart of a recursive grammar "
                f"(at most {GENERAL_MAX_TOKENS}: its cost grows with the cube of the length)"
            )

    def _root_values(
        self, strings: Sequence[StringLike], sr: Semiring, check_exact: bool = False
    ) -> list:
        """The start symbol's value over each whole string; None where it is zero."""
        strings = self._check(strings)
        if self.recursive:
            return [self._general_root(s, sr, check_exact) for s in strings]
        out: list = [None] * len(strings)
        limit = self.max_length
        assert limit is not None  # every non-recursive grammar has a longest string
        idx = [i for i, s in enumerate(strings) if 0 < len(s) <= limit]

        def roots(part: list[np.ndarray]) -> list:
            batch = chart_sparse.Batch.of(part)
            vals = self._sparse_roots(batch, sr)
            if check_exact and any(v is not None and v >= EXACT_FLOAT_LIMIT for v in vals):
                vals = self._sparse_roots(batch, BIG_COUNTING)
            return vals

        for chunk in _chunks(idx, key=lambda i: len(strings[i])):
            for i, v in zip(chunk, _in_halves(roots, [strings[i] for i in chunk])):
                out[i] = v
        return out

    def _sparse_roots(self, batch: chart_sparse.Batch, sr: Semiring) -> list:
        t = self._sparse
        chart = self._sparse_inside(batch, sr)
        if sr is COUNTING and len(chart.val) and chart.val.max() >= EXACT_FLOAT_LIMIT:
            return [EXACT_FLOAT_LIMIT] * len(batch.base)  # not exact: the caller recounts
        hit = chart.find(t.start, batch.base, batch.base + batch.length)
        return [chart.val[h] if h >= 0 else None for h in hit]

    def _general_root(self, s: np.ndarray, sr: Semiring, check_exact: bool) -> Any:
        if len(s) == 0:
            return None
        self._general_bound(s)
        v = chart_general.inside(self._general, s, sr)
        if check_exact and v.max() >= EXACT_FLOAT_LIMIT:
            v = chart_general.inside(self._general, s, BIG_COUNTING)
        root = v[self._general.start, 0, len(s)]
        return None if root == sr.zero else root

    def _spanset(self, s: np.ndarray, sr: Semiring) -> chart_sparse.SpanSet:
        """One string's chart as a SpanSet over the reading tables' symbol ids."""
        if not self.recursive:
            return self._sparse_inside(chart_sparse.Batch.of([s]), sr)
        self._general_bound(s)
        return self._general_spanset(chart_general.inside(self._general, s, sr), len(s), sr)

    def _general_spanset(
        self, v: np.ndarray, n: int, sr: Semiring, limit: float | None = None
    ) -> chart_sparse.SpanSet:
        # V[symbol, start, length] is a window per symbol with lengths 0..n; the binarisation's
        # intermediate symbols are left out (trees are read back with the grammar's own rules).
        windows = {x: chart_window.Window(0, v[x, :n]) for x in range(self._reading.n_symbols)}
        return chart_window.to_spanset(windows, sr, n, limit)

    def _repairs_within_one(
        self,
        strings: list[np.ndarray],
        edit: list[int | None],
        todo: list[int],
        out: list,
        repaired: bool = True,
    ) -> list[int]:
        """Settle, in sparse batches, the strings at most one substitution away.

        Where one substitution at position p repairs a string, its tokens before p are a viable
        prefix, so p <= k, the first position whose token has next-token probability 0 (or the
        string's length, where only the end is wrong). Substitutions are tried near k first (a
        window of ONE_EDIT_WINDOW tokens: after a wrong token the prefix usually dies within a
        few tokens), then anywhere up to k: the same answers as allowing them everywhere, with
        a min-plus chart barely larger than the plain one.
        """
        if not todo:
            return todo
        # a valid string has no dead position (its length): it settles at cost 0 in any pass
        dead = self._first_dead_positions([strings[i] for i in todo])
        limits = [len(strings[i]) if (e := edit[i]) is None else e for i in todo]
        for wide in (False, True):
            ranges = [
                (0 if wide else max(d - ONE_EDIT_WINDOW + 1, 0), min(d, limit - 1))
                for d, limit in zip(dead, limits)
            ]
            todo, dead, limits = self._within_one_pass(
                strings, todo, ranges, out, repaired, dead, limits
            )
            if not todo:
                break
        return todo

    def _within_one_pass(
        self,
        strings: list[np.ndarray],
        todo: list[int],
        ranges: list[tuple[int, int]],
        out: list,
        repaired: bool,
        dead: list[int],
        limits: list[int],
    ) -> tuple[list[int], list[int], list[int]]:
        """One budget-1 min-plus batch, substitutions allowed at positions lo..hi of each string;
        the strings not settled come back (with their dead positions and edit limits)."""
        t = self._sparse
        batch = chart_sparse.Batch.of([strings[i] for i in todo])
        editable = np.concatenate(
            [
                (np.arange(len(strings[i])) >= lo) & (np.arange(len(strings[i])) <= hi)
                for i, (lo, hi) in zip(todo, ranges)
            ]
        )
        chart = self._sparse_inside(batch, MIN_PLUS, budget=1, editable=editable)
        hit = chart.find(t.start, batch.base, batch.base + batch.length)
        reader = chart_sparse.TreeReader(t, chart)
        rest: tuple[list[int], list[int], list[int]] = ([], [], [])
        for k, (i, h) in enumerate(zip(todo, hit)):
            if h < 0:
                for part, value in zip(rest, (i, dead[k], limits[k])):
                    part.append(value)
                continue
            cost, b = float(chart.val[h]), int(batch.base[k])
            fixed = None
            if repaired:
                fixed = strings[i].copy()
                for p, token in reader.substitutions(t.start, b, b + len(strings[i]), cost):
                    fixed[p - b] = token
            out[i] = Repair(int(cost), fixed)
        return rest

    def _first_dead_positions(self, strings: list[np.ndarray]) -> list[int]:
        """Per string, the first position whose token has next-token probability 0 given the
        tokens before it; the string's length when every prefix is viable."""
        dead = []
        for s, rows in zip(strings, self.next_token_batch(strings)):
            zero = np.flatnonzero(rows[np.arange(len(s)), 1 + s] <= 0)
            dead.append(int(zero[0]) if len(zero) else len(s))
        return dead

    def _repair(self, s: np.ndarray, editable: int | None, repaired: bool = True) -> Repair:
        if self.recursive:
            self._general_bound(s)
            v = chart_general.inside(self._general, s, MIN_PLUS, editable)
            cost = float(v[self._general.start, 0, len(s)])
        else:
            windows = chart_window.inside(self._sparse, s, MIN_PLUS, self._lengths, editable)
            cost = float(chart_window.value(windows, self._sparse.start, 0, len(s), MIN_PLUS))
        if not np.isfinite(cost):
            return Repair(None, None)
        if not repaired:
            return Repair(int(cost), None)
        if not self.recursive:  # no unit cycles: only the substituted leaves' paths are read
            chart = chart_window.to_spanset(windows, MIN_PLUS, len(s), cost)
            reader = chart_sparse.TreeReader(self._reading, chart)
            fixed = s.copy()
            for p, token in reader.substitutions(self._reading.start, 0, len(s), cost):
                fixed[p] = token
            return Repair(int(cost), fixed)
        chart = self._general_spanset(v, len(s), MIN_PLUS, cost)
        with _deep_trees(len(s)):
            tree = next(
                chart_sparse.TreeReader(self._reading, chart).trees(
                    self._reading.start, 0, len(s), cost
                )
            )
            return Repair(int(cost), self.grammar.encode(tree.leaves()).astype(np.int64))


@contextmanager
def _deep_trees(n_tokens: int) -> Iterator[None]:
    """Trees are read back recursively; a recursive grammar's tree can be as deep as its string
    is long (S -> a S), a few Python frames per level."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 8 * n_tokens + 1000))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def _normalise(logits: np.ndarray) -> np.ndarray:
    """Rows of log masses → probability rows; rows with no mass become zeros."""
    top = logits.max(axis=1, keepdims=True)
    alive = np.isfinite(top[:, 0])
    p = np.zeros_like(logits)
    p[alive] = np.exp(logits[alive] - top[alive])
    p[alive] /= p[alive].sum(axis=1, keepdims=True)
    return p


def _in_halves(run: Callable[[list], list], strings: list) -> list:
    """run(strings), or where one batch's sparse chart passes CHART_BUDGET_BYTES, run over each
    half and joined: the same values with at most half the memory (one string alone that does
    not fit is the caller's ChartBudgetError)."""
    try:
        return run(strings)
    except SparseBudgetError:
        if len(strings) == 1:
            raise
        half = len(strings) // 2
        return _in_halves(run, strings[:half]) + _in_halves(run, strings[half:])


def _chunks(items: list, key: Callable[[Any], int] = len, limit: int = _BATCH_TOKENS) -> list[list]:
    """Consecutive groups of at most `limit` tokens (a long string goes alone)."""
    out: list[list] = []
    cur: list = []
    size = 0
    for x in items:
        n = key(x)
        if cur and size + n > limit:
            out.append(cur)
            cur, size = [], 0
        cur.append(x)
        size += n + 1
    if cur:
        out.append(cur)
    return out
