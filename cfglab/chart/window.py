"""The chart for non-recursive grammars, dense: one array per symbol over (start, length window).

The sparse span sets of sparse.py store only derivable spans, which is what membership,
counting and probabilities need. Min-plus with a large budget is the opposite case: nearly every
span is "derivable at some price", and joining span lists pair by pair costs far more than
sliding arrays. Here symbol X's chart is an array V[X] of shape (starts, hi_X - lo_X + 1) where
column c holds the span of length lo_X + c, [lo_X, hi_X] being the lengths X can derive. A rule
is applied left to right; joining a partial right side P with the next child C is a loop over
P's lengths with whole-array operations over (start, C's lengths):

    Q[i, L1 + L2] ⊕= P[i, L1] ⊗ C[i + L1, L2]

The start symbol is only needed at position 0, so its arrays have a single row. Work per string
is about (#rules) × n × (window width)², all in numpy slices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cfglab.chart.semiring import Semiring
from cfglab.chart.sparse import SpanSet, SparseTables
from cfglab.grammar.core import yield_bounds


@dataclass
class Window:
    """One symbol's chart: rows are start positions `rows`, columns lengths lo..lo+width-1."""

    lo: int
    val: np.ndarray  # (n_rows, width)

    @property
    def hi(self) -> int:
        return self.lo + self.val.shape[1] - 1


def yield_lengths(t: SparseTables) -> tuple[np.ndarray, np.ndarray]:
    """Shortest and longest string of every internal symbol (terminals: 1), by internal id."""
    shortest, longest = yield_bounds(t.grammar)
    lo = np.array([shortest[name] for name in t.names], dtype=np.int64)
    hi = np.array([longest[name] for name in t.names], dtype=np.int64)
    return lo, hi


def inside(
    t: SparseTables,
    tokens: np.ndarray,
    sr: Semiring,
    lengths: tuple[np.ndarray, np.ndarray],
    editable: int | None = None,
) -> dict[int, Window]:
    """Every symbol's window chart over one string (min-plus: a leaf costs 1 where it differs
    from the token, and only the first `editable` tokens may differ; default all)."""
    n = len(tokens)
    lo_len = lengths[0]
    chart: dict[int, Window] = {}
    for x in range(t.n_terminals):
        leaf = sr.full((n, 1), sr.zero)
        leaf[tokens == x, 0] = sr.one
        if sr.mismatch is not None:
            leaf[(tokens != x) & (np.arange(n) < (n if editable is None else editable)), 0] = (
                sr.mismatch
            )
        chart[x] = Window(1, leaf)
    rule_val = sr.rule_values(t.rule_prob)
    for rules in t.levels:
        for a in np.unique(t.rule_lhs[rules]):
            if lo_len[a] > n:
                continue
            rows = 1 if a == t.start else n
            alternatives = range(t.rules_first[a], t.rules_first[a + 1])
            parts = [_apply_rule(t, chart, r, rule_val[r], sr, rows, n) for r in alternatives]
            merged = _merge([p for p in parts if p is not None], sr, rows)
            if merged is not None:
                chart[int(a)] = merged
    return chart


def _apply_rule(
    t: SparseTables, chart: dict[int, Window], r: int, weight: Any, sr: Semiring, rows: int, n: int
) -> Window | None:
    kids = t.rule_rhs[r, : t.rule_len[r]]
    if any(int(k) not in chart for k in kids):
        return None
    first = chart[int(kids[0])]
    part = Window(first.lo, sr.times(first.val[:rows], weight))
    for k in kids[1:]:
        joined = _join(part, chart[int(k)], sr, n)
        if joined is None:
            return None
        part = joined
    return part


def _join(p: Window, c: Window, sr: Semiring, n: int) -> Window | None:
    """Q[i, L1 + L2] = ⊕ P[i, L1] ⊗ C[i + L1, L2], lengths capped at n."""
    lo, hi = p.lo + c.lo, min(p.hi + c.hi, n)
    if lo > hi:
        return None
    rows = p.val.shape[0]
    q = sr.full((rows, hi - lo + 1), sr.zero)
    wc = c.val.shape[1]
    for col in range(p.val.shape[1]):
        l1 = p.lo + col
        m = min(rows, n - l1)  # rows i whose next child starts inside the string
        if m <= 0:
            break
        w = min(wc, q.shape[1] - col)
        if w <= 0:
            break
        block = sr.times(p.val[:m, col, None], c.val[l1 : l1 + m, :w])
        q[:m, col : col + w] = sr.plus(q[:m, col : col + w], block)
    return Window(lo, q)


def _merge(parts: list[Window], sr: Semiring, rows: int) -> Window | None:
    if not parts:
        return None
    lo, hi = min(p.lo for p in parts), max(p.hi for p in parts)
    out = sr.full((rows, hi - lo + 1), sr.zero)
    for p in parts:
        sl = out[:, p.lo - lo : p.hi - lo + 1]
        sl[...] = sr.plus(sl, p.val)
    return Window(lo, out)


def value(chart: dict[int, Window], sym: int, start: int, end: int, sr: Semiring) -> Any:
    """The chart value of (sym, start, end); zero where the symbol cannot span it."""
    w = chart.get(sym)
    if w is None or not (w.lo <= end - start <= w.hi) or start >= w.val.shape[0]:
        return sr.zero
    return w.val[start, end - start - w.lo]


def to_spanset(
    chart: dict[int, Window], sr: Semiring, n: int, limit: float | None = None
) -> SpanSet:
    """The non-zero entries (min-plus: entries ≤ limit) as a SpanSet, for reading trees back."""
    width, stride = n + 1, n + 1
    parts = []
    for sym in sorted(chart):
        w = chart[sym]
        keep = w.val != sr.zero if limit is None else w.val <= limit
        i, c = np.nonzero(keep)
        parts.append(
            (
                np.full(len(i), sym, np.int64),
                i.astype(np.int64),
                (i + w.lo + c).astype(np.int64),
                w.val[i, c],
            )
        )
    syms, starts, ends, vals = (np.concatenate(x) for x in zip(*parts))
    return SpanSet.of(syms, starts, ends, vals, width, stride, max(chart) + 1)
