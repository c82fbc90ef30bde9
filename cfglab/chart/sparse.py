"""The chart for non-recursive grammars: sparse span sets, built level by level, batched.

A non-recursive grammar's nonterminals have levels (longest path from the start symbol) and every
rule's right side lies strictly below its left side. So the chart needs no agenda: the spans of
the deepest nonterminals are built from terminals, then each level from the spans already built.
Only derivable spans are stored, as flat arrays of items (symbol, start, end, value), sorted by
(symbol, start, length); a rule is applied to all items at once by walking its right side
("dotted" items) and looking each next child up with one `searchsorted`. All strings of a batch
share the arrays: string s occupies global positions [base_s, base_s + len_s) with one unused
position between strings, so no span crosses from one string into the next.

Two passes share these tables:
  inside   (any semiring)  item value = semiring sum over the span's derivations
  forward  (log_inside)    F(X, p) = log of the probability mass of all partial derivations from
                           the start whose symbol X begins at position p with the tokens left of
                           p derived exactly; F(t, k) for a terminal t is the prefix probability
                           P(tokens[:k] t ...), which gives the next-token rows
Parse trees and min-plus repairs are read back top-down from an inside chart.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from cfglab.chart import budget as chart_budget
from cfglab.chart.semiring import Semiring
from cfglab.grammar.core import Grammar, Tree, yield_bounds

_KEY_LIMIT = 2**62  # item keys (symbol, start, length) packed into one int64
_COLUMNS = ("sym", "start", "end", "val", "key")  # a SpanSet's item arrays
_INDEX_LIMIT = 8_000_000  # entries of the (symbol, start) -> first item table; beyond, bisect
# Bytes one item costs while a level is built: its completion arrays (owner, item, rule, start,
# end, value, the aggregation's key and order) and its place in the chart's growth arrays.
_ITEM_BYTES = 96


@dataclass(frozen=True)
class SparseTables:
    """A non-recursive grammar renumbered for the level-by-level chart.

    Internal symbol ids: terminals 0..T-1 (as in the grammar), then nonterminals by level, the
    deepest level first, so every level's items sort after everything built before them.
    """

    grammar: Grammar
    n_terminals: int
    n_symbols: int
    names: tuple[str, ...]  # internal id -> symbol name
    start: int
    rule_lhs: np.ndarray  # (R,) internal ids; rules sorted by lhs
    rule_len: np.ndarray  # (R,)
    rule_rhs: np.ndarray  # (R, max_len) internal ids, -1 padded
    rule_prob: np.ndarray  # (R,)
    rule_index: np.ndarray  # (R,) index into grammar.rules
    rules_first: np.ndarray  # (n_symbols + 1,) rules of lhs x are rules_first[x]:rules_first[x+1]
    levels: tuple[np.ndarray, ...]  # rule indices of each nonterminal level, deepest first
    level_symbols: tuple[tuple[int, int], ...]  # id range [lo, hi) per level, deepest first
    max_yield: int  # longest string any symbol derives

    @staticmethod
    def build(g: Grammar) -> SparseTables:
        levels = g.levels
        if levels is None:
            raise ValueError(f"grammar {g.name} is recursive; the sparse chart needs levels")
        T = len(g.terminals)
        nts = sorted(levels, key=lambda nt: (-levels[nt], g.symbol_ids[nt]))
        names = tuple(g.terminals) + tuple(nts)
        internal = {name: i for i, name in enumerate(names)}
        keep = [i for i, r in enumerate(g.rules) if r.lhs in internal]
        keep.sort(key=lambda i: internal[g.rules[i].lhs])
        max_len = max((len(g.rules[i].rhs) for i in keep), default=1)
        rhs = np.full((len(keep), max_len), -1, dtype=np.int64)
        for k, i in enumerate(keep):
            rhs[k, : len(g.rules[i].rhs)] = [internal[s] for s in g.rules[i].rhs]
        lhs = np.array([internal[g.rules[i].lhs] for i in keep], dtype=np.int64)
        n_symbols = len(names)
        first = np.searchsorted(lhs, np.arange(n_symbols + 1)).astype(np.int64)
        depths = sorted({levels[nt] for nt in nts}, reverse=True)
        level_of = np.array([levels[names[x]] for x in lhs], dtype=np.int64)
        sym_level = np.array([levels[n] for n in nts], dtype=np.int64)
        ranges = tuple(
            (
                T + int(np.searchsorted(-sym_level, -d, "left")),
                T + int(np.searchsorted(-sym_level, -d, "right")),
            )
            for d in depths
        )
        return SparseTables(
            grammar=g,
            n_terminals=T,
            n_symbols=n_symbols,
            names=names,
            start=internal[g.start],
            rule_lhs=lhs,
            rule_len=np.array([len(g.rules[i].rhs) for i in keep], dtype=np.int64),
            rule_rhs=rhs,
            rule_prob=np.array([g.rule_probability(g.rules[i]) for i in keep]),
            rule_index=np.array(keep, dtype=np.int64),
            rules_first=first,
            levels=tuple(np.flatnonzero(level_of == d) for d in depths),
            level_symbols=ranges,
            max_yield=max(yield_bounds(g)[1].values()),
        )

    @staticmethod
    def plain(g: Grammar) -> SparseTables:
        """The same rule tables over the grammar's own symbol ids, for any grammar (recursive
        too): enough to read trees back from a chart, not to build one level by level."""
        a = g.arrays
        T, R = a.n_terminals, len(a.rule_len)
        first = np.concatenate([[0], np.cumsum(a.nt_n_rules)]).astype(np.int64)
        return SparseTables(
            grammar=g,
            n_terminals=T,
            n_symbols=T + a.n_nonterminals,
            names=g.symbols,
            start=a.start,
            rule_lhs=a.rule_lhs.astype(np.int64),
            rule_len=a.rule_len.astype(np.int64),
            rule_rhs=a.rule_rhs.astype(np.int64),
            rule_prob=a.rule_prob,
            rule_index=np.arange(R, dtype=np.int64),
            rules_first=np.concatenate([np.zeros(T, np.int64), first]),
            levels=(),
            level_symbols=(),
            max_yield=0,
        )


@dataclass
class Batch:
    """Where each string of a batch lives on the global position axis."""

    tokens: np.ndarray  # (total,) terminal ids, strings concatenated
    base: np.ndarray  # (n,) global position of each string's first token
    length: np.ndarray  # (n,)
    width: int  # positions 0..width-1 exist (one gap after each string)

    @staticmethod
    def of(strings: list[np.ndarray]) -> Batch:
        length = np.array([len(s) for s in strings], dtype=np.int64)
        base = np.concatenate([[0], np.cumsum(length + 1)[:-1]]).astype(np.int64)
        tokens = (
            np.concatenate([np.asarray(s, dtype=np.int64) for s in strings])
            if strings
            else np.zeros(0, dtype=np.int64)
        )
        return Batch(tokens, base, length, int(length.sum() + len(strings) + 1))

    def positions(self) -> np.ndarray:
        """Global position of every token, in `tokens` order."""
        return np.repeat(self.base, self.length) + _ragged_arange(self.length)


@dataclass
class SpanSet:
    """Derivable spans as items sorted by key = (symbol * width + start) * stride + length.

    `first`, when built, maps symbol * width + start to the first item of that (symbol, start),
    so the items beginning there are first[k]:first[k + 1] without a binary search.
    """

    sym: np.ndarray
    start: np.ndarray
    end: np.ndarray
    val: np.ndarray
    key: np.ndarray
    width: int
    stride: int
    first: np.ndarray | None = None
    # arrays with room to grow, of which the five columns above are prefixes (append_level)
    spare: dict[str, np.ndarray] | None = field(default=None, repr=False, compare=False)
    # rule completions computed to build it: the chart's cost, which callers can budget
    work: int = field(default=0, compare=False, init=False)

    @staticmethod
    def of(
        sym: np.ndarray,
        start: np.ndarray,
        end: np.ndarray,
        val: np.ndarray,
        width: int,
        stride: int,
        n_symbols: int,
    ) -> SpanSet:
        """Items in any order → a sorted, indexed SpanSet."""
        key = (sym * width + start) * stride + (end - start)
        order = np.argsort(key, kind="stable")
        spans = SpanSet(sym[order], start[order], end[order], val[order], key[order], width, stride)
        spans.index(n_symbols)
        return spans

    def index(self, n_symbols: int) -> None:
        """Build `first` (unless the table would be too large)."""
        if n_symbols * self.width > _INDEX_LIMIT:
            return
        counts = np.bincount(self.sym * self.width + self.start, minlength=n_symbols * self.width)
        self.first = np.zeros(n_symbols * self.width + 1, dtype=np.int64)
        np.cumsum(counts, out=self.first[1:])

    def append_level(
        self,
        sym: np.ndarray,
        start: np.ndarray,
        end: np.ndarray,
        val: np.ndarray,
        lo: int,
        hi: int,
        tail: bool = True,
    ) -> SpanSet:
        """Add the sorted items of symbols lo..hi-1, all above every symbol stored so far.
        tail=False leaves `first` above hi as it was: for a caller whose next level starts at
        hi and writes it (filling the whole tail at every level is quadratic in levels)."""
        key = (sym * self.width + start) * self.stride + (end - start)
        old = len(self.sym)
        parts = dict(zip(_COLUMNS, (sym, start, end, val, key)))
        spare = self._room(old + len(sym), parts)
        for name, part in parts.items():  # one copy of the new items, not of the whole chart
            spare[name][old : old + len(sym)] = part
        columns = {name: spare[name][: old + len(sym)] for name in _COLUMNS}
        spans = SpanSet(
            **columns, width=self.width, stride=self.stride, first=self.first, spare=spare
        )
        if spans.first is not None:  # updated in place: the SpanSet before this level is spent
            w = self.width
            counts = np.bincount(sym * w + start - lo * w, minlength=(hi - lo) * w)
            spans.first[lo * w + 1 : hi * w + 1] = old + np.cumsum(counts)
            if tail:
                spans.first[hi * w + 1 :] = old + len(sym)
        return spans

    def skip_level(self, lo: int, hi: int, tail: bool = True) -> None:
        """`append_level` of no items for symbols lo..hi-1: only `first` changes."""
        if self.first is not None:
            w, old = self.width, len(self.sym)
            self.first[lo * w + 1 : (hi * w + 1) if not tail else None] = old

    def _room(self, size: int, parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Growth arrays holding this chart's items with room for `size`: reused while they
        fit (levels appended one by one: concatenating every level re-copied the whole chart,
        quadratic in levels: a unit chain has thousands), else doubled."""
        spare = self.spare
        fits = spare is not None and all(
            len(spare[n]) >= size
            and spare[n].dtype == np.result_type(getattr(self, n), parts[n])
            and (not len(self.sym) or np.shares_memory(spare[n][:1], getattr(self, n)[:1]))
            for n in _COLUMNS
        )
        if fits:
            assert spare is not None
            return spare
        out = {}
        for n in _COLUMNS:
            mine = getattr(self, n)
            out[n] = np.empty(max(2 * size, 1024), dtype=np.result_type(mine, parts[n]))
            out[n][: len(mine)] = mine
        return out

    def find(
        self, sym: int | np.ndarray, start: int | np.ndarray, end: int | np.ndarray
    ) -> np.ndarray:
        """Item index of each (sym, start, end), -1 where the span is not derivable."""
        key = (np.asarray(sym) * self.width + start) * self.stride + (np.asarray(end) - start)
        i = np.searchsorted(self.key, key)
        hit = (i < len(self.key)) & (self.key[np.minimum(i, len(self.key) - 1)] == key)
        return np.where(hit, i, -1)

    def starting(self, sym: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[lo, hi) item ranges of the spans of `sym` that begin at `start`."""
        if self.first is not None:
            k = sym * self.width + start
            return self.first[k], self.first[k + 1]
        base = (sym * self.width + start) * self.stride
        return np.searchsorted(self.key, base), np.searchsorted(self.key, base + self.stride)


# --- the inside pass -------------------------------------------------------------------------
def inside(
    t: SparseTables,
    batch: Batch,
    sr: Semiring,
    budget: float | None = None,
    editable: np.ndarray | None = None,
    max_work: int | None = None,
) -> SpanSet:
    """Every derivable span of every string with its semiring value.

    Min-plus: only items of value ≤ budget are kept, and a token may be substituted only where
    `editable` (one bool per token of the batch; default all) is True. SparseBudgetError when
    the chart would pass CHART_BUDGET_BYTES; WorkBudgetError when its rule completions would
    pass `max_work`.
    """
    stride = int(max(batch.length.max(initial=0), 1)) + 1
    if t.n_symbols * batch.width * stride >= _KEY_LIMIT:
        raise ValueError("batch too large for the chart's int64 keys; split it")
    chart = _leaves(t, batch, sr, budget, stride, editable)
    chart.index(t.n_symbols)
    rule_val = sr.rule_values(t.rule_prob)
    ranges = t.level_symbols
    # symbols with at least one item: a level none of whose rules' first children has one
    # derives nothing, and is passed over without a rule walk (a 2,000-long unit chain whose
    # terminal is absent from the strings: 2,000 empty walks per batch)
    present = np.zeros(t.n_symbols, dtype=bool)
    present[chart.sym] = True
    work = 0
    for k, (rules, (lo, hi)) in enumerate(zip(t.levels, ranges)):
        follows = k + 1 < len(ranges) and ranges[k + 1][0] == hi  # the next level writes on
        if not present[t.rule_rhs[rules, 0]].any():
            chart.skip_level(lo, hi, tail=not follows)
            continue
        room = chart_budget.CHART_BUDGET_BYTES // _ITEM_BYTES - len(chart.sym)
        left = None if max_work is None else max_work - work
        try:
            sym, start, end, val = _apply_rules(
                t, chart, rules, rule_val, sr, budget, room if left is None else min(room, left)
            )
        except _TooManyItems as err:
            if left is not None and err.items > left:
                raise chart_budget.WorkBudgetError(
                    f"a sparse pass over {len(batch.base)} strings of grammar {t.grammar.name} "
                    f"would pass its limit of {max_work:,} rule completions"
                ) from None
            raise _budget_error(t, batch, k, len(chart.sym), err.items) from None
        work += len(sym)
        sym, start, end, val = _aggregate(sym, start, end, val, sr, batch.width, stride)
        chart = chart.append_level(sym, start, end, val, lo, hi, tail=not follows)
        present[sym] = True
    chart.work = work
    return chart


class _TooManyItems(Exception):
    def __init__(self, items: int) -> None:
        self.items = items


def _budget_error(
    t: SparseTables, batch: Batch, level: int, stored: int, items: int
) -> chart_budget.SparseBudgetError:
    n = len(batch.base)
    what = (
        f"a {int(batch.length[0])}-token string"
        if n == 1
        else f"{n} strings ({int(batch.length.sum()):,} tokens)"
    )
    return chart_budget.SparseBudgetError(
        f"the chart of {what} of grammar {t.grammar.name} passed its budget of "
        f"{chart_budget.CHART_BUDGET_BYTES / 2**20:,.0f} MiB (CHART_BUDGET_BYTES) at level "
        f"{len(t.levels) - level} of {len(t.levels)} from the top: {stored:,} spans stored and "
        f"{items:,} more under way; fix: shorter strings, or a grammar whose nonterminals derive "
        "fewer spans of the same tokens (rules over one terminal or one nonterminal let almost "
        "every span be derived)"
    )


def _leaves(
    t: SparseTables,
    batch: Batch,
    sr: Semiring,
    budget: float | None,
    stride: int,
    editable: np.ndarray | None,
) -> SpanSet:
    pos = batch.positions()
    if sr.mismatch is None:
        sym, start = batch.tokens, pos
        val = sr.full(len(pos), sr.one)
    else:  # every terminal at every position, at a price where it differs from the token
        T = t.n_terminals
        sym = np.repeat(np.arange(T, dtype=np.int64), len(pos))
        start = np.tile(pos, T)
        same = sym == np.tile(batch.tokens, T)
        val = np.where(same, sr.one, sr.mismatch).astype(sr.dtype)
        keep = same | (True if editable is None else np.tile(editable, T))
        if budget is not None:
            keep &= val <= budget
        sym, start, val = sym[keep], start[keep], val[keep]
    order = np.lexsort((start, sym))
    sym, start, val = sym[order], start[order], val[order]
    key = (sym * batch.width + start) * stride + 1
    return SpanSet(sym, start, start + 1, val, key, batch.width, stride)


def _apply_rules(
    t: SparseTables,
    chart: SpanSet,
    rules: np.ndarray,
    rule_val: np.ndarray,
    sr: Semiring,
    budget: float | None,
    room: int | None = None,
) -> tuple[np.ndarray, ...]:
    """All completions of `rules` over the chart: (lhs, start, end, value), unaggregated.

    With `room`, _TooManyItems as soon as the completions in flight would pass that many (each
    expansion is counted before it is allocated)."""
    lo = np.searchsorted(chart.sym, t.rule_rhs[rules, 0], "left")
    hi = np.searchsorted(chart.sym, t.rule_rhs[rules, 0], "right")
    held = 0  # completions in `done`

    def fits(lo: np.ndarray, hi: np.ndarray) -> None:
        items = held + int((hi - lo).sum())
        if room is not None and items > room:
            raise _TooManyItems(items)

    fits(lo, hi)
    owner, item = _ragged(lo, hi)
    r = rules[owner]
    start, end = chart.start[item], chart.end[item]
    val = sr.times(rule_val[r], chart.val[item])
    done: list[tuple[np.ndarray, ...]] = []
    for d in range(1, t.rule_rhs.shape[1] + 1):
        complete = t.rule_len[r] == d
        done.append((t.rule_lhs[r[complete]], start[complete], end[complete], val[complete]))
        held += int(complete.sum())
        r, start, end, val = r[~complete], start[~complete], end[~complete], val[~complete]
        if len(r) == 0:
            break
        lo, hi = chart.starting(t.rule_rhs[r, d], end)
        fits(lo, hi)
        owner, item = _ragged(lo, hi)
        r, start, end = r[owner], start[owner], chart.end[item]
        val = sr.times(val[owner], chart.val[item])
        if budget is not None:
            keep = val <= budget
            r, start, end, val = r[keep], start[keep], end[keep], val[keep]
    return tuple(np.concatenate(parts) for parts in zip(*done))


def _aggregate(
    sym: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    val: np.ndarray,
    sr: Semiring,
    width: int,
    stride: int,
) -> tuple[np.ndarray, ...]:
    """Semiring-sum the values of equal (sym, start, end) items; sorted by key."""
    if len(sym) == 0:
        return sym, start, end, val
    key = (sym * width + start) * stride + (end - start)
    order = np.argsort(key, kind="stable")
    key = key[order]
    first = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    val = sr.plus.reduceat(val[order], first)
    pick = order[first]
    return sym[pick], start[pick], end[pick], val


# --- the forward pass (prefix probabilities) --------------------------------------------------
Items = tuple[np.ndarray, np.ndarray, np.ndarray]  # (symbol, position, log mass) per item


def forward(
    t: SparseTables, batch: Batch, chart: SpanSet
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log forward mass F(t, p) of every terminal t at every position p: (sym, pos, logF)."""
    width = batch.width
    pending: list[Items] = [
        (np.full(len(batch.base), t.start, np.int64), batch.base.copy(), np.zeros(len(batch.base)))
    ]
    for lo, hi in t.level_symbols[::-1]:
        sym, pos, val = _take_pending(pending, lo, hi, width)
        pending.extend(_predict(t, chart, sym, pos, val))
    return _take_pending(pending, 0, t.n_terminals, width)


def _take_pending(
    pending: list[Items], lo: int, hi: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Remove and log-sum the pending forward items of symbols lo..hi-1, keyed (sym, pos)."""
    parts, keep = [], []
    for sym, pos, val in pending:
        mine = (sym >= lo) & (sym < hi)
        parts.append((sym[mine], pos[mine], val[mine]))
        keep.append((sym[~mine], pos[~mine], val[~mine]))
    pending[:] = [k for k in keep if len(k[0])]
    sym, pos, val = (np.concatenate(x) for x in zip(*parts))
    key = sym * width + pos
    order = np.argsort(key, kind="stable")
    key = key[order]
    first = (
        np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
        if len(key)
        else np.zeros(0, dtype=np.int64)
    )
    return (
        sym[order[first]],
        pos[order[first]],
        np.logaddexp.reduceat(val[order], first) if len(first) else val,
    )


def _predict(
    t: SparseTables, chart: SpanSet, sym: np.ndarray, pos: np.ndarray, val: np.ndarray
) -> list[Items]:
    """Forward items of every child of every rule of the given (lhs, position, mass) items."""
    owner, r = _ragged(t.rules_first[sym], t.rules_first[sym + 1])
    pos, val = pos[owner], val[owner] + np.log(t.rule_prob[r])
    out: list[Items] = [(t.rule_rhs[r, 0], pos, val)]
    for d in range(1, t.rule_rhs.shape[1]):
        more = t.rule_len[r] > d
        r, pos, val = r[more], pos[more], val[more]
        if len(r) == 0:
            break
        lo, hi = chart.starting(t.rule_rhs[r, d - 1], pos)  # step over child d-1, complete
        owner, item = _ragged(lo, hi)
        r, pos, val = r[owner], chart.end[item], val[owner] + chart.val[item]
        out.append((t.rule_rhs[r, d], pos, val))
    return out


# --- reading trees back ----------------------------------------------------------------------
class TreeReader:
    """Reads derivation trees back from a chart, lazily, in rule order.

    With a min-plus chart and a budget, only trees whose substitutions total at most the budget
    (their leaves are then the repaired tokens). Before trying a child span, a memoised check
    makes sure the remaining children can still complete the rule, so enumeration never wanders
    into dead ends. A chain of unit rules never visits a symbol twice on one span: a grammar with
    unit cycles yields its cycle-free trees only.
    """

    def __init__(self, t: SparseTables, chart: SpanSet) -> None:
        self.t, self.chart = t, chart
        self._feasible_memo: dict[tuple, bool] = {}

    def trees(
        self,
        sym: int,
        start: int,
        end: int,
        budget: float | None = None,
        unit_path: frozenset = frozenset(),
    ) -> Iterator[Tree]:
        t = self.t
        if sym < t.n_terminals:
            yield Tree(t.names[sym], [])
            return
        for r in range(t.rules_first[sym], t.rules_first[sym + 1]):
            unit = t.rule_len[r] == 1
            if unit and int(t.rule_rhs[r, 0]) in unit_path | {sym}:
                continue
            path = unit_path | {sym} if unit else frozenset()
            if not self._feasible(r, 0, start, end, budget):
                continue
            for children in self._sequences(r, 0, start, end, budget, path):
                yield Tree(t.names[sym], children, int(t.rule_index[r]))

    def substitutions(self, sym: int, start: int, end: int, budget: float) -> list[tuple[int, int]]:
        """(position, terminal) of each leaf of `trees(sym, start, end, budget)`'s first tree
        that costs a substitution, in a min-plus chart of a grammar without unit cycles.

        The same choices as `trees` (first rule, first child items, each completion checked
        feasible), but only children that cost something are entered: a child of cost 0 derives
        its tokens unchanged, so its subtree adds no substitution. One path per substitution
        instead of the whole tree.
        """
        out: list[tuple[int, int]] = []
        todo = [(sym, start, end, budget)]
        while todo:
            sym, start, end, budget = todo.pop()
            if sym < self.t.n_terminals:
                out.append((start, sym))
                continue
            todo.extend(self._first_children(sym, start, end, budget))
        return sorted(out)

    def _first_children(
        self, sym: int, start: int, end: int, budget: float
    ) -> list[tuple[int, int, int, float]]:
        """The children (symbol, start, stop, cost) of cost > 0 of the first tree's root rule."""
        t = self.t
        for r in range(t.rules_first[sym], t.rules_first[sym + 1]):
            if not self._feasible(r, 0, start, end, budget):
                continue
            costly, pos, rest = [], start, budget
            for d in range(int(t.rule_len[r])):
                x, stop, cost = next(self._children(r, d, pos, end, rest))
                assert cost is not None
                if cost > 0:
                    costly.append((x, pos, stop, cost))
                pos, rest = stop, rest - cost
            return costly
        raise ValueError(f"no tree of cost <= {budget} for ({sym}, {start}, {end})")

    def _children(
        self, r: int, d: int, start: int, end: int, budget: float | None
    ) -> Iterator[tuple[int, int, float | None]]:
        """(child symbol, stop, cost) of each chart item that can be child d of rule r here."""
        x = int(self.t.rule_rhs[r, d])
        last = d == int(self.t.rule_len[r]) - 1
        lo, hi = self.chart.starting(np.array([x]), np.array([start]))
        for item in range(int(lo[0]), int(hi[0])):
            stop = int(self.chart.end[item])
            if stop > end or (stop == end) != last:
                continue
            cost = rest = None
            if budget is not None:
                cost = float(self.chart.val[item])
                if cost > budget:
                    continue
                rest = budget - cost
            if last or self._feasible(r, d + 1, stop, end, rest):
                yield x, stop, cost

    def _feasible(self, r: int, d: int, start: int, end: int, budget: float | None) -> bool:
        key = (r, d, start, end, budget)
        if key not in self._feasible_memo:
            found = next(self._children(r, d, start, end, budget), None)
            self._feasible_memo[key] = found is not None
        return self._feasible_memo[key]

    def _sequences(
        self, r: int, d: int, start: int, end: int, budget: float | None, path: frozenset
    ) -> Iterator[list[Tree]]:
        last = d == int(self.t.rule_len[r]) - 1
        for x, stop, cost in self._children(r, d, start, end, budget):
            for first in self.trees(x, start, stop, cost, path):
                if last:
                    yield [first]
                    continue
                rest = None if budget is None or cost is None else budget - cost
                for tail in self._sequences(r, d + 1, stop, end, rest, path):
                    yield [first, *tail]


# --- ragged index helpers --------------------------------------------------------------------
def _ragged(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges [lo_k, hi_k): (k, index) for every index of every range, in order."""
    counts = hi - lo
    owner = np.repeat(np.arange(len(lo)), counts)
    shift = lo - (np.cumsum(counts) - counts)  # index = position in the output + shift of its range
    return owner, np.arange(len(owner), dtype=np.int64) + shift[owner]


def _ragged_arange(counts: np.ndarray) -> np.ndarray:
    """Concatenated aranges: [0..c0), [0..c1), ..."""
    total = int(counts.sum())
    starts = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(starts, counts)
