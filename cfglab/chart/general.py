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

from dataclasses import dataclass, field

import numpy as np

from cfglab.chart.semiring import Semiring
from cfglab.errors import CfglabError
from cfglab.grammar.core import Grammar


class InfiniteParsesError(CfglabError):
    """A unit cycle (A -> B -> ... -> A) gives some strings infinitely many parse trees."""


class ChartBudgetError(CfglabError):
    """One string's dense chart would pass CHART_BUDGET_BYTES: refused before allocating."""


CHART_BUDGET_BYTES = 256 * 2**20  # one string's V[symbol, start, length] at most
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
    stars: dict[tuple[str, float], np.ndarray | None] = field(
        default_factory=dict, compare=False, repr=False
    )

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
def unit_star(t: GeneralTables, sr: Semiring) -> np.ndarray | None:
    """U*[A, B] = semiring sum over unit chains A ->* B (the empty chain included); None when
    the grammar has no unit rules."""
    if len(t.unit_lhs) == 0:
        return None
    key = (sr.name, sr.power)
    if key not in t.stars:
        t.stars[key] = _unit_star(t, sr)
    return t.stars[key]


def _unit_star(t: GeneralTables, sr: Semiring) -> np.ndarray | None:
    u = t.unit_matrix()
    reach = _reachability(u > 0)
    if sr.name == "boolean":
        return reach
    if sr.name == "min_plus":
        return np.where(reach, 0.0, np.inf)
    if sr.name in ("counting", "big_counting"):
        if np.any(np.diag(_reachability(u > 0, reflexive=False))):
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


def _apply_star(star: np.ndarray | None, v: np.ndarray, sr: Semiring) -> np.ndarray:
    """out[A, i] = ⊕_B star[A, B] ⊗ v[B, i]."""
    if star is None:
        return v
    return sr.plus.reduce(sr.times(star[:, :, None], v[None, :, :]), axis=1)


# --- the inside pass --------------------------------------------------------------------------
def inside(
    t: GeneralTables, tokens: np.ndarray, sr: Semiring, editable: int | None = None
) -> np.ndarray:
    """V[symbol, start, length] for one string (length 0 unused). Min-plus: a leaf costs 1 where
    it differs from the token, and only the first `editable` tokens may differ (default all)."""
    n = len(tokens)
    _require_budget(t, n, sr)
    may_differ = np.arange(n) < (n if editable is None else editable)
    star = unit_star(t, sr)
    v = sr.full((t.n_symbols, max(n, 1), max(n, 1) + 1), sr.zero)
    for x in range(t.n_terminals):
        differ = sr.zero if sr.mismatch is None else np.where(may_differ, sr.mismatch, sr.zero)
        v[x, :n, 1] = np.where(tokens == x, sr.one, differ)
    v[:, :n, 1] = _apply_star(star, v[:, :n, 1], sr)
    weight = sr.rule_values(t.bin_prob)
    for length in range(2, n + 1):
        if len(t.bin_lhs) == 0:
            break
        m = n - length + 1
        spans = sr.full((t.n_symbols, m), sr.zero)
        block = max(1, _BLOCK_ITEMS // (m * (length - 1)))
        for lo in range(0, len(t.bin_lhs), block):  # bounded temporaries however many rules
            rules = slice(lo, lo + block)
            sr.plus.at(spans, t.bin_lhs[rules], _binary_step(t, v, rules, length, m, sr, weight))
        v[:, :m, length] = _apply_star(star, spans, sr)
    return v


def _binary_step(
    t: GeneralTables,
    v: np.ndarray,
    rules: slice,
    length: int,
    m: int,
    sr: Semiring,
    weight: np.ndarray,
) -> np.ndarray:
    """(rules, m): each binary rule's value over the spans of `length` at starts 0..m-1."""
    split = np.arange(1, length)
    # index the left children's spans directly: v[bin_left] would copy every length of every
    # rule's child (10,000 rules x 64 tokens: 333 MB per step)
    left = v[t.bin_left[rules], :m, 1:length]  # (R, m, length-1)
    right = v[
        t.bin_right[rules, None, None],
        np.arange(m)[None, :, None] + split[None, None, :],
        (length - split)[None, None, :],
    ]
    return sr.times(sr.plus.reduce(sr.times(left, right), axis=2), weight[rules, None])


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
