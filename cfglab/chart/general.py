"""The chart for any ε-free grammar, recursive ones included: CKY by span length, dense.

The grammar is binarised (A -> X1 X2 X3 becomes @ -> X1 X2, A -> @ X3 with the rule's weight on
the top rule) and unit rules A -> B are kept apart: after the binary rules fill a span, the unit
closure U* (the semiring sum over unit chains, a matrix over symbols) is applied to it. The
chart is an array V[symbol, start, length]; each span length is one vectorised step over all
binary rules, starts and split points.

Prefix probabilities use the same tables (Jelinek–Lafferty / Stolcke): F(X, k), the mass of
partial derivations whose symbol X begins at position k with tokens[:k] derived to its left,
is filled position by position: second children of binary rules get
F(A, i) p(r) In(B, i, k); every symbol then passes its mass down left corners through the closure
(I - P_L)^-1 of the left-corner matrix. F(t, k) of a terminal t is P(tokens[:k] t ...).

Cost: O(n³ · binary rules) time and O(symbols · n²) memory per string; the sparse level-by-level
chart (sparse.py) is what non-recursive grammars use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cfglab.chart.budget import CHART_BUDGET_BYTES, ChartBudgetError
from cfglab.chart.semiring import Semiring
from cfglab.errors import CfglabError
from cfglab.grammar.core import Grammar


class InfiniteParsesError(CfglabError):
    """A unit cycle (A -> B -> ... -> A) gives some strings infinitely many parse trees."""


_BLOCK_ITEMS = 2**21  # binary rules x starts x split points per vectorised step (16 MB float64)


@dataclass(frozen=True)
class GeneralTables:
    """Binary and unit rules over symbol ids: the grammar's own ids, then intermediates."""

    grammar: Grammar
    n_terminals: int
    n_symbols: int
    start: int
    bin_lhs: np.ndarray
    bin_left: np.ndarray
    bin_right: np.ndarray
    bin_prob: np.ndarray
    unit_lhs: np.ndarray
    unit_child: np.ndarray
    unit_prob: np.ndarray
    # unit closures by (semiring, power), computed once per grammar rather than once per string
    stars: dict[tuple[str, float], UnitStar] = field(
        default_factory=dict, compare=False, repr=False
    )
    # which unit-rule symbols reach which by a chain of one or more unit rules, shared by every
    # semiring's closure (each recomputed it: 0.5 s per semiring at 3,000 unit symbols)
    chains: list[np.ndarray] = field(default_factory=list, compare=False, repr=False)

    @staticmethod
    def build(g: Grammar) -> GeneralTables:
        a = g.arrays
        n_sym = a.n_terminals + a.n_nonterminals
        binary: list[tuple[int, int, int, float]] = []
        unit: list[tuple[int, int, float]] = []
        for r in range(len(a.rule_len)):
            lhs, p = int(a.rule_lhs[r]), float(a.rule_prob[r])
            rhs = [int(x) for x in a.rule_rhs[r, : a.rule_len[r]]]
            if len(rhs) == 1:
                unit.append((lhs, rhs[0], p))
                continue
            left = rhs[0]
            for x in rhs[1:-1]:  # left-binarise: one fresh symbol per proper prefix
                binary.append((n_sym, left, x, 1.0))
                left, n_sym = n_sym, n_sym + 1
            binary.append((lhs, left, rhs[-1], p))
        b = np.array(binary, dtype=np.float64).reshape(-1, 4)
        u = np.array(unit, dtype=np.float64).reshape(-1, 3)
        return GeneralTables(
            grammar=g,
            n_terminals=a.n_terminals,
            n_symbols=n_sym,
            start=a.start,
            bin_lhs=b[:, 0].astype(np.int64),
            bin_left=b[:, 1].astype(np.int64),
            bin_right=b[:, 2].astype(np.int64),
            bin_prob=b[:, 3],
            unit_lhs=u[:, 0].astype(np.int64),
            unit_child=u[:, 1].astype(np.int64),
            unit_prob=u[:, 2],
        )

    def unit_matrix(self) -> np.ndarray:
        m = np.zeros((self.n_symbols, self.n_symbols))
        np.add.at(m, (self.unit_lhs, self.unit_child), self.unit_prob)
        return m

    def left_corner_matrix(self) -> np.ndarray:
        m = self.unit_matrix()
        np.add.at(m, (self.bin_lhs, self.bin_left), self.bin_prob)
        return m


# --- closures ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Closure:
    """U* from the symbols a step can fill (`cols`: terminals for leaves, binary left sides for
    longer spans) to the symbols it reaches (`rows`); every other row is the identity, so the
    closure costs rows x cols per span, not symbols² (10,000 terminals and a 10-rule unit cycle:
    a 10,010² matrix, 800 MB and seconds per span, before)."""

    rows: np.ndarray
    cols: np.ndarray
    star: np.ndarray  # (rows, cols) semiring values


@dataclass(frozen=True)
class UnitStar:
    """U*[A, B] = semiring sum over unit chains A ->* B (the empty chain included), kept on the
    symbols of unit rules only, with its two closures."""

    symbols: np.ndarray  # ids of the symbols in some unit rule, ascending
    star: np.ndarray  # (k, k) over `symbols`
    leaves: _Closure
    spans: _Closure


def unit_star(t: GeneralTables, sr: Semiring) -> UnitStar | None:
    """U* for the semiring, computed once per grammar; None when there are no unit rules."""
    if len(t.unit_lhs) == 0:
        return None
    key = (sr.name, sr.power)
    if key not in t.stars:
        symbols = np.unique(np.concatenate([t.unit_lhs, t.unit_child]))
        u = np.zeros((len(symbols), len(symbols)))
        at = (np.searchsorted(symbols, t.unit_lhs), np.searchsorted(symbols, t.unit_child))
        np.add.at(u, at, t.unit_prob)
        star = _unit_star(t, u, sr)
        terminals = np.arange(t.n_terminals)
        t.stars[key] = UnitStar(
            symbols,
            star,
            _closure(symbols, star, terminals, sr),
            _closure(symbols, star, np.unique(t.bin_lhs), sr),
        )
    return t.stars[key]


def _closure(symbols: np.ndarray, star: np.ndarray, sources: np.ndarray, sr: Semiring) -> _Closure:
    cols = np.flatnonzero(np.isin(symbols, sources))
    block = star[:, cols]
    rows = np.flatnonzero((block != sr.zero).any(axis=1))
    return _Closure(symbols[rows], symbols[cols], block[rows])


def _unit_star(t: GeneralTables, u: np.ndarray, sr: Semiring) -> np.ndarray:
    """U* over the unit rules' symbols, u their (k, k) matrix of rule probabilities."""
    if not t.chains:
        t.chains.append(_reachability(u > 0, reflexive=False))
    chains = t.chains[0]
    reach = chains | np.eye(len(u), dtype=bool)
    if sr.name == "boolean":
        return reach
    if sr.name == "min_plus":
        return np.where(reach, 0.0, np.inf)
    if sr.name in ("counting", "big_counting"):
        if np.any(np.diag(chains)):
            raise InfiniteParsesError(
                f"grammar {t.grammar.name} has a cycle of unit rules (A -> B -> ... -> A): "
                "a string derived through it has infinitely many parse trees"
            )
        return _integer_star(u > 0, sr)
    return _log(_inverse_star(u, "unit rules"))


def _reachability(adj: np.ndarray, reflexive: bool = True) -> np.ndarray:
    n = len(adj)
    reach = adj.copy()
    for _ in range(max(1, int(np.ceil(np.log2(n + 1))))):
        # float32 products go through BLAS (int64 ones do not: 18 s at 1,000 symbols); the
        # entries are sums of 0/1 products, so > 0 is exact
        m = reach.astype(np.float32)
        wider = reach | ((m @ m) > 0)
        if np.array_equal(wider, reach):  # closed: squaring again adds nothing
            break
        reach = wider
    return reach | np.eye(n, dtype=bool) if reflexive else reach


def _integer_star(adj: np.ndarray, sr: Semiring) -> np.ndarray:
    """Σ_k U^k over exact integers (U is acyclic): the number of unit chains A ->* B, one row per
    symbol in reverse topological order (row A = e_A + Σ rows of A's children), O(n · edges)."""
    n = len(adj)
    children = [[int(b) for b in np.flatnonzero(row)] for row in adj]
    order: list[int] = []
    pending = adj.sum(axis=0).astype(np.int64)  # pending: parents not yet ordered
    ready = [b for b in range(n) if pending[b] == 0]
    while ready:  # Kahn: parents before children
        a = ready.pop()
        order.append(a)
        for b in children[a]:
            pending[b] -= 1
            if pending[b] == 0:
                ready.append(b)
    total = np.zeros((n, n), dtype=object)
    for a in reversed(order):
        row = np.zeros(n, dtype=object)
        row[a] = 1
        for b in children[a]:
            row = row + total[b]
        total[a] = row
    return total.astype(sr.dtype)


def _inverse_star(m: np.ndarray, what: str) -> np.ndarray:
    """Σ_k M^k = (I - M)^-1 for a substochastic M; a CfglabError when the series diverges."""
    n = len(m)
    try:
        star = np.linalg.inv(np.eye(n) - m)
    except np.linalg.LinAlgError:
        star = None
    if star is None or not np.all(np.isfinite(star)) or star.min() < -1e-9:
        raise CfglabError(
            f"the rule weights make the {what} of the grammar divergent "
            "(probability mass cycles without end); lower the cycle's weights"
        )
    return np.maximum(star, 0.0)


def _log(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(np.where(p > 1e-300, p, 0.0))


def _bool_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # float32 sums of 0/1 products are exact far past any closure's width, so > 0 is exact
    return (a.astype(np.float32) @ b.astype(np.float32)) > 0


# semirings whose star application is a matrix product (a 2,000-rule unit cycle beside a
# 1,000-rule cycle: rows x cols x m ufunc temporaries per span were 2.6 s of a check). Counting
# stays exact: integer products and sums below EXACT_FLOAT_LIMIT in any order.
_MATMUL: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "boolean": _bool_product,
    "counting": np.matmul,
}


def _apply_star(closure: _Closure | None, v: np.ndarray, sr: Semiring) -> np.ndarray:
    """out[A, i] = ⊕_B U*[A, B] ⊗ v[B, i], where v is zero outside the closure's columns."""
    if closure is None or not len(closure.rows):
        return v
    out = v.copy()
    src = v[closure.cols]  # (cols, m)
    if sr.name in _MATMUL:  # (+, *) or (or, and): one BLAS product, not rows x cols x m ufuncs
        out[closure.rows] = _MATMUL[sr.name](closure.star, src)
        return out
    block = max(1, _BLOCK_ITEMS // max(1, src.size))
    for lo in range(0, len(closure.rows), block):  # bounded temporaries: rows x cols x m
        part = closure.star[lo : lo + block, :, None]
        out[closure.rows[lo : lo + block]] = sr.plus.reduce(sr.times(part, src[None]), axis=1)
    return out


# --- the inside pass --------------------------------------------------------------------------
def inside(
    t: GeneralTables, tokens: np.ndarray, sr: Semiring, editable: int | None = None
) -> np.ndarray:
    """V[symbol, start, length] for one string (length 0 unused). Min-plus: a leaf costs 1 where
    it differs from the token, and only the first `editable` tokens may differ (default all).

    V is a view of a chart stored length-major, W[length, symbol, start]: each length's spans
    are written as one contiguous plane. Stored symbol-major, every write strode across all
    symbols' rows (12,000 symbols, 18-39 tokens: 3.4 s to count 22 strings, against 0.9 s now)."""
    n = len(tokens)
    _require_budget(t, n, sr)
    may_differ = np.arange(n) < (n if editable is None else editable)
    star = unit_star(t, sr)
    w = sr.full((max(n, 1) + 1, t.n_symbols, max(n, 1)), sr.zero)
    # every terminal row at once: a loop over 10,000 fan-out terminals was a quarter of a count
    if sr.mismatch is not None:
        w[1, : t.n_terminals, :n] = np.where(may_differ, sr.mismatch, sr.zero)
    w[1, tokens, np.arange(n)] = sr.one
    w[1, :, :n] = _apply_star(None if star is None else star.leaves, w[1, :, :n], sr)
    live = _live_rules(t, tokens, sr)
    lhs, left, right = t.bin_lhs[live], t.bin_left[live], t.bin_right[live]
    weight = sr.rule_values(t.bin_prob)[live]
    for length in range(2, n + 1):
        if len(lhs) == 0:
            break
        m = n - length + 1
        spans = sr.full((t.n_symbols, m), sr.zero)
        block = max(1, _BLOCK_ITEMS // (m * (length - 1)))
        for lo in range(0, len(lhs), block):  # bounded temporaries however many rules
            b = slice(lo, lo + block)
            sr.plus.at(spans, lhs[b], _binary_step(w, left[b], right[b], weight[b], length, sr))
        w[length, :, :m] = _apply_star(None if star is None else star.spans, spans, sr)
    return w.transpose(1, 2, 0)


def _live_rules(t: GeneralTables, tokens: np.ndarray, sr: Semiring) -> np.ndarray:
    """The binary rules that can fire on this string: no child is a terminal it lacks (10,000
    alternatives "f0" X | "f1" Y | ...: a 64-token string keeps at most 64). Every rule where a
    leaf may mismatch (min-plus): any terminal can stand at an editable position."""
    if sr.mismatch is not None:
        return np.arange(len(t.bin_lhs))
    present = np.ones(t.n_symbols, dtype=bool)
    present[: t.n_terminals] = False
    present[tokens] = True
    return np.flatnonzero(present[t.bin_left] & present[t.bin_right])


def _binary_step(
    w: np.ndarray,
    left_child: np.ndarray,
    right_child: np.ndarray,
    weight: np.ndarray,
    length: int,
    sr: Semiring,
) -> np.ndarray:
    """(rules, m): each binary rule's value over the spans of `length` at starts 0..m-1, from
    the length-major chart W[length, symbol, start]."""
    m = w.shape[2] - length + 1
    split = np.arange(1, length)
    # index the left children's spans directly: w[:, bin_left] would copy every length of every
    # rule's child (10,000 rules x 64 tokens: 333 MB per step)
    left = w[1:length, left_child, :m]  # (length-1, R, m): the left child spans `split`
    right = w[
        (length - split)[:, None, None],
        right_child[None, :, None],
        np.arange(m)[None, None, :] + split[:, None, None],
    ]
    return sr.times(sr.plus.reduce(sr.times(left, right), axis=0), weight[:, None])


def _require_budget(t: GeneralTables, n: int, sr: Semiring) -> None:
    """ChartBudgetError when one string's chart would pass CHART_BUDGET_BYTES."""
    item = 64 if sr.dtype is object else np.dtype(sr.dtype).itemsize  # a Python int: ~64 B
    need = t.n_symbols * max(n, 1) * (max(n, 1) + 1) * item
    if need > CHART_BUDGET_BYTES:
        raise ChartBudgetError(
            f"the chart of a {n}-token string of grammar {t.grammar.name} needs "
            f"{need / 2**20:,.0f} MiB ({t.n_symbols:,} symbols x {n} starts x {n + 1} lengths), "
            f"over its budget of {CHART_BUDGET_BYTES / 2**20:,.0f} MiB (CHART_BUDGET_BYTES); "
            "fix: shorter strings, or fewer terminals and rules in the recursive part of the "
            "grammar (every terminal and binarised rule is a row of this recursive grammar's "
            "dense chart)"
        )


# --- the forward pass (prefix probabilities) --------------------------------------------------
def forward(t: GeneralTables, tokens: np.ndarray, log_in: np.ndarray) -> np.ndarray:
    """F[symbol, k] = log mass of partial derivations with the symbol at k, tokens[:k] left."""
    n = len(tokens)
    lc = _log(_inverse_star(t.left_corner_matrix(), "left corners"))  # lc[Y, X]: Y ->* X ...
    f = np.full((t.n_symbols, n + 1), -np.inf)
    f[:, 0] = lc[t.start]
    logp = np.log(t.bin_prob)
    for k in range(1, n + 1):
        i = np.arange(k)
        inner = (
            f[t.bin_lhs[:, None], i[None, :]]
            + log_in[t.bin_left[:, None], i[None, :], (k - i)[None, :]]
        )
        contrib = np.logaddexp.reduce(inner, axis=1) + logp
        seed = np.full(t.n_symbols, -np.inf)
        np.logaddexp.at(seed, t.bin_right, contrib)
        f[:, k] = np.logaddexp.reduce(seed[:, None] + lc, axis=0)
    return f
