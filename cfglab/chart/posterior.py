"""Exact posteriors of the tree labels: what an ideal reader of a string (or a prefix) knows.

For a token i and a tree depth d (the root is depth 0, as in `cfglab.grammar.sample`), the
paper's labels (Part 1, §4.1) are s_d(i), the nonterminal of i's depth-d ancestor, and b_d(i),
whether i is the last token of that ancestor. Under the grammar's rule weights (a PCFG) a string
x has a distribution over parse trees, and so over labels:

  whole string   P(s_d(i) = A | x),  P(b_d(i) = 1 | x)
  prefix         P(s_d(i) = A | x[:i+1]),  P(b_d(i) = 1 | x[:i+1]): the tree of every valid
                 completion y of x[:i+1], weighted by P(x[:i+1] y)

These are beyond the paper: they are the Bayes-optimal readers that a probe's accuracy is set
beside (its ceiling). Both are exact, computed on the sparse chart of `cfglab.chart.sparse`.

Whole string (inside–outside, written as top-down splitting): every derivable span item (A, s, e)
has an inside log mass β. A rule completion ("edge") A → B_1 .. B_k over items c_1 .. c_k takes
the share exp(log p(rule) + Σ β(c_j) − β(A, s, e)) of its parent's mass. The posterior
γ(item, d) that the tree has that node at depth d starts at 1 for the root item and flows down
the edges, level by level (a parent's level is always above its children's). Then
P(s_d(i) = A | x) = Σ_{s ≤ i < e} γ((A, s, e), d) and
P(b_d(i) = 1 | x) = Σ_{A, s} γ((A, s, i+1), d).

Prefix (forward–backward over predictions): a forward node (X, t, d) — "a depth-d node X begins
at t, with the tokens before t derived" — carries the forward mass F of the partial derivations
that reach it, every pending right sibling counting 1 (its completions sum to 1 in a consistent
PCFG: every non-recursive grammar). The depth-d ancestor of token m−1 is the forward node on the
prediction path down to the leaf x_{m−1} at m−1, so
  P(s_d(m−1) = A | x[:m]) = Σ_t F(A, t, d) · Bk_m(A, t, d) / Z_m
with Z_m = P(x[:m] is a prefix) and Bk_m the mass of prediction paths from the node down to that
leaf. Bk is computed for every m at once, bottom-up, as a band per node (a node's m lies within
its symbol's longest yield), and kept scaled by Z_t / Z_m so that nothing underflows on long
strings. P(b_d(m−1) = 1 | x[:m]) = Σ_{A, t} F(A, t, d) · β(A, t, m) / Z_m.

Non-recursive grammars only (the paper's); a recursive grammar is refused with a message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cfglab.chart.semiring import LOG_INSIDE
from cfglab.chart.sparse import Batch, SpanSet, SparseTables, _ragged, inside

BATCH_TOKENS = 6000  # tokens per chart batch: the label arrays are depth × tokens × nonterminals


@dataclass(frozen=True)
class Posterior:
    """One string's label posteriors; depth rows as in `Samples.ancestors`.

    ancestors[d, i, A]  P(s_d(i) = A), A a nonterminal index into `grammar.nonterminals`
                        (each (d, i) row sums to P(token i's path reaches depth d) ≤ 1)
    ends[d, i, A]       P(s_d(i) = A and b_d(i) = 1): token i ends a depth-d A
    boundaries[d, i]    P(b_d(i) = 1) = Σ_A ends[d, i, A]
    """

    ancestors: np.ndarray  # (depth, len, N) float64
    ends: np.ndarray  # (depth, len, N) float64
    boundaries: np.ndarray  # (depth, len) float64


class PosteriorTables:
    """The sparse tables plus what the posterior passes need, built once per grammar."""

    def __init__(self, t: SparseTables) -> None:
        g = t.grammar
        self.t = t
        self.depth = int(g.depth or 1)
        T = t.n_terminals
        # internal symbol id -> nonterminal index into grammar.nonterminals (-1 for terminals)
        self.own = np.full(t.n_symbols, -1, dtype=np.int64)
        for x in range(T, t.n_symbols):
            self.own[x] = g.symbol_ids[t.names[x]] - T
        self.n_nonterminals = len(g.nonterminals)
        self.log_prob = np.log(t.rule_prob)
        # level index of each symbol, counted from the top (the start symbol is 0); terminals last
        n_levels = len(t.level_symbols)
        self.sym_level = np.full(t.n_symbols, n_levels, dtype=np.int64)
        for k, (lo, hi) in enumerate(t.level_symbols):
            self.sym_level[lo:hi] = n_levels - 1 - k
        self.n_levels = n_levels
        self.rule_level = self.sym_level[t.rule_lhs]
        self.max_yield = _symbol_yields(t)


def _symbol_yields(t: SparseTables) -> np.ndarray:
    """Longest string each internal symbol derives."""
    longest = np.zeros(t.n_symbols, dtype=np.int64)
    longest[: t.n_terminals] = 1
    for rules in t.levels:  # deepest level first, so every child is known
        for r in rules:
            k = int(t.rule_len[r])
            lhs = t.rule_lhs[r]
            longest[lhs] = max(longest[lhs], int(longest[t.rule_rhs[r, :k]].sum()))
    return longest


# --- whole string ------------------------------------------------------------------------------
def whole_string(pt: PosteriorTables, strings: Sequence[np.ndarray]) -> list[Posterior | None]:
    """Posteriors given each whole string; None for a string not in the language."""
    t = pt.t
    batch = Batch.of(list(strings))
    chart = inside(t, batch, LOG_INSIDE)
    root = chart.find(t.start, batch.base, batch.base + batch.length)
    parent, frac, kids = _edges(pt, chart)
    D, N, W = pt.depth, pt.n_nonterminals, batch.width
    ok = root >= 0
    pending = [(root[ok], np.zeros(int(ok.sum()), np.int64), np.ones(int(ok.sum())))]
    order = np.argsort(parent, kind="stable")
    parent_sorted = parent[order]
    nodes: list[tuple[np.ndarray, ...]] = []  # (item, depth, posterior) of every level
    for level in range(pt.n_levels):
        item, d, g = _take_items(pt, chart, pending, level)
        if not len(item):
            continue
        nodes.append((item, d, g))
        lo = np.searchsorted(parent_sorted, item, "left")
        hi = np.searchsorted(parent_sorted, item, "right")
        owner, k = _ragged(lo, hi)
        edge = order[k]
        mass = g[owner] * frac[edge]
        for j in range(kids.shape[1]):
            child = kids[edge, j]
            use = child >= 0
            pending.append((child[use], d[owner][use] + 1, mass[use]))
    if not nodes:  # no string of the batch is in the language
        return [None] * len(strings)
    item, d, g = (np.concatenate(x) for x in zip(*nodes))
    a, s, e = pt.own[chart.sym[item]], chart.start[item], chart.end[item]
    owner, pos = _ragged(s, e)  # every (node, token inside its span)
    flat = (d[owner] * W + pos) * N + a[owner]
    anc_all = _clip(np.bincount(flat, weights=g[owner], minlength=D * W * N).reshape(D, W, N))
    end_flat = (d * W + e - 1) * N + a
    ends_all = np.bincount(end_flat, weights=g, minlength=D * W * N).reshape(D, W, N)
    bnd_all = _clip(ends_all.sum(axis=2))
    ends_all = _clip(ends_all)
    out: list[Posterior | None] = []
    for b, n, found in zip(batch.base, batch.length, ok):
        cut = slice(b, b + n)
        post = Posterior(anc_all[:, cut], ends_all[:, cut], bnd_all[:, cut])
        out.append(post if found else None)
    return out


def _clip(a: np.ndarray) -> np.ndarray:
    """Sums of positive shares may pass 1 by an ulp; a probability stays ≤ 1."""
    return np.minimum(a, 1.0, out=a)


def _edges(pt: PosteriorTables, chart: SpanSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every rule completion over the chart: parent item, share of its inside mass, child items."""
    t = pt.t
    rules = np.arange(len(t.rule_lhs))
    lo = np.searchsorted(chart.sym, t.rule_rhs[rules, 0], "left")
    hi = np.searchsorted(chart.sym, t.rule_rhs[rules, 0], "right")
    owner, item = _ragged(lo, hi)
    r, start, end = rules[owner], chart.start[item], chart.end[item]
    val = pt.log_prob[r] + chart.val[item]
    kids = item[:, None]
    width = t.rule_rhs.shape[1]
    done: list[tuple[np.ndarray, ...]] = []
    for d in range(1, width + 1):
        complete = t.rule_len[r] == d
        pad = np.full((int(complete.sum()), width - d), -1, dtype=np.int64)
        done.append((r[complete], start[complete], end[complete], val[complete]))
        done[-1] += (np.concatenate([kids[complete], pad], axis=1),)
        keep = ~complete
        r, start, end, val, kids = r[keep], start[keep], end[keep], val[keep], kids[keep]
        if len(r) == 0:
            break
        lo, hi = chart.starting(t.rule_rhs[r, d], end)
        owner, item = _ragged(lo, hi)
        r, start, end = r[owner], start[owner], chart.end[item]
        val = val[owner] + chart.val[item]
        kids = np.concatenate([kids[owner], item[:, None]], axis=1)
    r, start, end, val, kids = (np.concatenate(p) for p in zip(*done))
    parent = chart.find(t.rule_lhs[r], start, end)
    return parent, np.exp(val - chart.val[parent]), kids


def _take_items(
    pt: PosteriorTables, chart: SpanSet, pending: list, level: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Remove the pending (item, depth, mass) of one level's symbols and sum equal (item, depth)."""
    mine, rest = [], []
    for item, d, g in pending:
        here = pt.sym_level[chart.sym[item]] == level
        mine.append((item[here], d[here], g[here]))
        rest.append((item[~here], d[~here], g[~here]))
    pending[:] = [p for p in rest if len(p[0])]
    if not mine:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    item, d, g = (np.concatenate(x) for x in zip(*mine))
    item, d, g = _sum_by_key(item * pt.depth + d, item, d, g)
    return item, d, g


def _sum_by_key(key: np.ndarray, *cols: np.ndarray) -> tuple[np.ndarray, ...]:
    """Rows of equal key merged: the first row's columns, the last column summed."""
    if not len(key):
        return cols
    order = np.argsort(key, kind="stable")
    k = key[order]
    first = np.flatnonzero(np.concatenate([[True], k[1:] != k[:-1]]))
    head = tuple(c[order[first]] for c in cols[:-1])
    return (*head, np.add.reduceat(cols[-1][order], first))


# --- prefix ------------------------------------------------------------------------------------
@dataclass
class _Forward:
    """Forward nodes (symbol, position, depth) with log F, and the prediction edges between them."""

    sym: np.ndarray
    pos: np.ndarray
    depth: np.ndarray
    log_f: np.ndarray
    level: np.ndarray  # level index of the node's symbol (terminals: n_levels)
    edge_parent: np.ndarray  # node ids
    edge_child: np.ndarray
    edge_log_w: np.ndarray  # log p(rule) + inside of the siblings stepped over


def prefixes(pt: PosteriorTables, strings: Sequence[np.ndarray]) -> list[Posterior | None]:
    """Posteriors of each token given the tokens up to it; None where the line is no prefix."""
    t = pt.t
    batch = Batch.of(list(strings))
    chart = inside(t, batch, LOG_INSIDE)
    token_at = np.full(batch.width, -1, dtype=np.int64)
    token_at[batch.positions()] = batch.tokens
    fw = _forward(pt, chart, batch, token_at)
    leaf = fw.sym < t.n_terminals
    # log Z at global position p: log P(the string's tokens before p are a prefix); 0 at a base
    log_z = np.full(batch.width + 1, -np.inf)
    log_z[batch.base] = 0.0
    lz = _logsumexp_by(fw.pos[leaf] + 1, fw.log_f[leaf], batch.width + 1)
    set_at = np.isfinite(lz)
    log_z[set_at] = lz[set_at]
    f_scaled = np.exp(fw.log_f - log_z[fw.pos])
    bands = _backward(pt, fw, log_z, leaf)
    D, N, W = pt.depth, pt.n_nonterminals, batch.width
    anc = np.zeros(D * W * N)
    nt = ~leaf
    for nodes, band in bands:
        nodes_nt = nodes[nt[nodes]]
        if not len(nodes_nt):
            continue
        band = band[nt[nodes]]
        k = np.arange(band.shape[1])
        m = fw.pos[nodes_nt][:, None] + k[None, :]  # token m ends the prefix
        post = f_scaled[nodes_nt][:, None] * band
        use = (post > 0) & (m < W)
        idx = (fw.depth[nodes_nt][:, None] * W + m) * N + pt.own[fw.sym[nodes_nt]][:, None]
        anc += np.bincount(idx[use], weights=post[use], minlength=D * W * N)
    ends = _prefix_ends(pt, chart, fw, log_z, f_scaled, nt, W)
    bnd = _clip(ends.sum(axis=2))
    anc_all, ends = _clip(anc.reshape(D, W, N)), _clip(ends)
    out: list[Posterior | None] = []
    for b, n in zip(batch.base, batch.length):
        cut = slice(b, b + n)
        valid = np.isfinite(log_z[b + n])
        out.append(Posterior(anc_all[:, cut], ends[:, cut], bnd[:, cut]) if valid else None)
    return out


def _logsumexp_by(key: np.ndarray, val: np.ndarray, size: int) -> np.ndarray:
    out = np.full(size, -np.inf)
    if len(key):
        top = np.full(size, -np.inf)
        np.maximum.at(top, key, val)
        s = np.bincount(key, weights=np.exp(val - top[key]), minlength=size)
        ok = s > 0
        out[ok] = top[ok] + np.log(s[ok])
    return out


def _forward(pt: PosteriorTables, chart: SpanSet, batch: Batch, token_at: np.ndarray) -> _Forward:
    """Depth-aware forward nodes, top level first; edges only into token positions."""
    t, D = pt.t, pt.depth
    n0 = len(batch.base)
    pending: list[tuple[np.ndarray, ...]] = [
        (
            np.full(n0, t.start, np.int64),
            batch.base.copy(),
            np.zeros(n0, np.int64),
            np.full(n0, -1, np.int64),
            np.zeros(n0),
        )
    ]
    nodes: list[tuple[np.ndarray, ...]] = []  # (sym, pos, depth, log_f) per level
    edges: list[tuple[np.ndarray, ...]] = []  # (parent id, child id, log_w)
    n_nodes = 0
    parent_log_f = np.zeros(0)
    for level in range(pt.n_levels + 1):
        mine, rest = [], []
        for p in pending:
            here = pt.sym_level[p[0]] == level
            mine.append(tuple(a[here] for a in p))
            rest.append(tuple(a[~here] for a in p))
        pending = [p for p in rest if len(p[0])]
        if not mine:
            continue
        sym, pos, depth, par, log_w = (np.concatenate(x) for x in zip(*mine))
        if level == pt.n_levels:  # leaves: only the token actually at the position
            keep = token_at[pos] == sym
            sym, pos, depth, par, log_w = sym[keep], pos[keep], depth[keep], par[keep], log_w[keep]
        key = (sym * batch.width + pos) * D + depth
        uniq, first, node_of = np.unique(key, return_index=True, return_inverse=True)
        ids = n_nodes + np.arange(len(uniq))
        contrib = log_w if level == 0 else log_w + parent_log_f[par]
        log_f = _logsumexp_by(node_of, contrib, len(uniq))
        nodes.append((sym[first], pos[first], depth[first], log_f))
        if level > 0:
            edges.append((par, ids[node_of], log_w))
        n_nodes += len(uniq)
        parent_log_f = np.concatenate([parent_log_f, log_f])
        if level == pt.n_levels:
            break
        pending.extend(
            _predict_edges(pt, chart, sym[first], pos[first], depth[first], ids, token_at)
        )
    sym, pos, depth, log_f = (np.concatenate(x) for x in zip(*nodes))
    ep, ec, ew = (np.concatenate(x) for x in zip(*edges))
    return _Forward(sym, pos, depth, log_f, pt.sym_level[sym], ep, ec, ew)


def _predict_edges(
    pt: PosteriorTables,
    chart: SpanSet,
    sym: np.ndarray,
    pos: np.ndarray,
    depth: np.ndarray,
    ids: np.ndarray,
    token_at: np.ndarray,
) -> list[tuple[np.ndarray, ...]]:
    """(child sym, child pos, child depth, parent id, log w) of every child of every rule."""
    t = pt.t
    owner, r = _ragged(t.rules_first[sym], t.rules_first[sym + 1])
    at, log_w, par, d = pos[owner], pt.log_prob[r], ids[owner], depth[owner] + 1
    out = [(t.rule_rhs[r, 0], at, d, par, log_w)]
    for j in range(1, t.rule_rhs.shape[1]):
        more = t.rule_len[r] > j
        r, at, log_w, par, d = r[more], at[more], log_w[more], par[more], d[more]
        if len(r) == 0:
            break
        lo, hi = chart.starting(t.rule_rhs[r, j - 1], at)  # step over child j-1, complete
        owner, item = _ragged(lo, hi)
        r, at = r[owner], chart.end[item]
        log_w, par, d = log_w[owner] + chart.val[item], par[owner], d[owner]
        out.append((t.rule_rhs[r, j], at, d, par, log_w))
    # a child beginning past the last token holds none of the prefix's tokens
    return [tuple(a[token_at[o[1]] >= 0] for a in o) for o in out]


def _backward(
    pt: PosteriorTables, fw: _Forward, log_z: np.ndarray, leaf: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per level, (node ids, band) with band[n, k] = Bk_{pos+k+1}(n) · Z_pos / Z_{pos+k+1}."""
    width = np.minimum(pt.max_yield, int(log_z.shape[0]))
    by_level: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    row_of = np.full(len(fw.sym), -1, dtype=np.int64)
    leaves = np.flatnonzero(leaf)
    row_of[leaves] = np.arange(len(leaves))
    p = fw.pos[leaves]
    by_level[pt.n_levels] = (leaves, np.exp(log_z[p] - log_z[p + 1])[:, None])
    child_level = fw.level[fw.edge_child]
    parent_level = fw.level[fw.edge_parent]
    for level in range(pt.n_levels - 1, -1, -1):
        nodes = np.flatnonzero(fw.level == level)
        row_of[nodes] = np.arange(len(nodes))
        w_level = int(width[fw.sym[nodes]].max()) if len(nodes) else 1
        band = np.zeros(len(nodes) * w_level)
        for below in range(level + 1, pt.n_levels + 1):
            e = np.flatnonzero((parent_level == level) & (child_level == below))
            if not len(e):
                continue
            _, kband = by_level[below]
            pa, ch = fw.edge_parent[e], fw.edge_child[e]
            coef = np.exp(fw.edge_log_w[e] + log_z[fw.pos[pa]] - log_z[fw.pos[ch]])
            shift = fw.pos[ch] - fw.pos[pa]
            k = np.arange(kband.shape[1])
            col = shift[:, None] + k[None, :]
            val = coef[:, None] * kband[row_of[ch]]
            use = (col < w_level) & (val > 0)
            idx = row_of[pa][:, None] * w_level + col
            band += np.bincount(idx[use], weights=val[use], minlength=len(band))
        by_level[level] = (nodes, band.reshape(len(nodes), w_level))
    return [by_level[level] for level in range(pt.n_levels)]


def _prefix_ends(
    pt: PosteriorTables,
    chart: SpanSet,
    fw: _Forward,
    log_z: np.ndarray,
    f_scaled: np.ndarray,
    nt: np.ndarray,
    width: int,
) -> np.ndarray:
    """ends[d, m-1, A] = Σ_t F(A, t, d) β(A, t, m) / Z_m over forward nodes and complete items."""
    nodes = np.flatnonzero(nt)
    lo, hi = chart.starting(fw.sym[nodes], fw.pos[nodes])
    owner, item = _ragged(lo, hi)
    n = nodes[owner]
    end = chart.end[item]
    post = f_scaled[n] * np.exp(chart.val[item] + log_z[fw.pos[n]] - log_z[end])
    ok = np.isfinite(post) & (post > 0)
    D, N = pt.depth, pt.n_nonterminals
    flat = (fw.depth[n][ok] * width + end[ok] - 1) * N + pt.own[fw.sym[n][ok]]
    counts = np.bincount(flat, weights=post[ok], minlength=D * width * N)
    return counts.astype(np.float64, copy=False).reshape(D, width, N)
