"""Attention statistics: does attention follow positions, and beyond that, NT boundaries?

For layer l, head h and distance p = i − k (query i, key k; string tokens only, BOS/EOS excluded):

    Ā_{l,h,p}  mean attention at distance p over every string and query
    B = A − Ā  attention not explained by distance
    offset     mean B over (i, k) with k − δ a level-ℓ NT-end (b_ℓ, nested sets: every
               level-2 end is also a level-3 end), δ ∈ [−2, 2], queries i all positions that
               may attend to k: a spike at δ = 0 means heads seek NT-ends
    offset_sharp  the same with k − δ an NT-end of class b♯ = ℓ (Part 1, §5: b♯(i) is the most
               ancestral level at which i ends a nonterminal, so the classes are disjoint) —
               the paper's conditioning
    adjacency  mean B over pairs of level-ℓ NT-ends (i, k), k the r-th level-ℓ NT-end before i
               (r < 0: after i, bidirectional models only): r = 1 large means an NT-end attends
               to the previous NT-end of its level, the paper's "adjacent NT-end" finding
    end_to_end B^{end→end}_{ℓ'→ℓ, r} (§5): mean B over pairs (query i, key k) with b♯(i) = ℓ',
               b♯(k) = ℓ and r = p_ℓ(i) − p_ℓ(k), p_ℓ the index of a token's level-ℓ ancestor
               (so r counts the level-ℓ nodes from k's to i's); shown as (ℓ', ℓ) heat maps
               per r. r = 0 pairs a query with an end of its own level-ℓ node (for a causal
               model, only k = i when ℓ' ≤ ℓ). [The paper's exact range of r and whether it
               averages heads is not confirmed here: the heat maps show the head mean and
               the JSON keeps every head.]

Means of B over a set S need no second pass: mean_S B = (Σ_S A − Σ_p n_S(p) Ā_p) / |S|, with
n_S(p) the number of pairs of S at distance p. `AttentionStats` accumulates Σ_S A and n_S string
by string, then finishes with Ā.

pos and uni heads weigh keys by distance alone, so B holds nothing: `attention_run` says so
instead of printing numbers. Every function runs from plain arguments (a Ray task can call it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cfglab.interpret.targets import LEVELS, NOTES, target_view
from cfglab.interpret.targets import names as target_names

OFFSETS = (-2, -1, 0, 1, 2)  # δ: key k sits δ tokens after a level-ℓ NT-end
MAX_ADJACENCY = 4  # r = 0..4 (and −4..−1 for bidirectional models)
POSITION_ONLY = {
    "pos": "pos heads weigh keys by a learned function of the distance alone",
    "uni": "uni heads average a fixed window of previous tokens",
}


class AttentionStats:
    """Accumulates attention maps of single strings; `result()` gives Ā and the B averages."""

    def __init__(
        self,
        n_layers: int,
        n_heads: int,
        max_len: int,
        levels: Sequence[int],
        causal: bool,
        offsets: Sequence[int] = OFFSETS,
        max_adjacency: int = MAX_ADJACENCY,
        kind: str = LEVELS,
    ) -> None:
        self.kind = kind  # levels (tree depth) or heights (↑h): `cfglab.interpret.targets`
        self.L, self.H, self.max_len, self.causal = n_layers, n_heads, max_len, causal
        self.levels, self.offsets = list(levels), list(offsets)
        self.adjacency = list(range(0 if causal else -max_adjacency, max_adjacency + 1))
        P = 2 * max_len - 1  # distances −(max_len−1) .. max_len−1, index p + max_len − 1
        self.dist_sum = np.zeros((n_layers, n_heads, P))
        self.dist_count = np.zeros(P)
        shape_o = (len(self.levels), len(self.offsets))
        shape_a = (len(self.levels), len(self.adjacency))
        self.off_sum = np.zeros((n_layers, n_heads) + shape_o)
        self.off_diff = np.zeros(shape_o + (P + 1,))  # difference arrays of n_S(p)
        self.adj_sum = np.zeros((n_layers, n_heads) + shape_a)
        self.adj_count = np.zeros(shape_a + (P,))
        self.sharp_sum = np.zeros((n_layers, n_heads) + shape_o)
        self.sharp_diff = np.zeros(shape_o + (P + 1,))
        shape_e = (len(self.levels), len(self.levels), len(self.adjacency))
        self.e2e_sum = np.zeros((n_layers, n_heads) + shape_e)
        self.e2e_count = np.zeros(shape_e + (P,))
        self.strings = 0

    def add(
        self,
        maps: np.ndarray,
        boundaries: np.ndarray,
        b_sharp: np.ndarray | None = None,
        ancestor_index: np.ndarray | None = None,
    ) -> None:
        """maps (L, H, n, n) attention among one string's n tokens; boundaries (depth, n) bool;
        b♯ (n,) and p_ℓ (depth, n) as the sampler gives them (by default derived from
        boundaries, which is exact for a layered grammar)."""
        n = maps.shape[-1]
        if n > self.max_len:
            raise ValueError(f"string of {n} tokens, but max_len is {self.max_len}")
        allowed = np.tril(np.ones((n, n), dtype=bool)) if self.causal else np.ones((n, n), bool)
        A = np.where(allowed, maps, 0.0).astype(np.float64)
        self._add_distances(A, allowed)
        colsum = A.sum(axis=2)  # (L, H, n) attention each key receives
        for a, level in enumerate(self.levels):
            ends = (
                np.flatnonzero(boundaries[level]) if level < len(boundaries) else np.zeros(0, int)
            )
            self._add_offsets(a, ends, colsum, n)
            self._add_adjacency(a, ends, A)
        sharp, index = _sharp_and_index(boundaries, b_sharp, ancestor_index)
        for a, level in enumerate(self.levels):
            ends = np.flatnonzero(sharp == level)
            self._add_offsets(a, ends, colsum, n, self.sharp_sum, self.sharp_diff)
        self._add_end_to_end(A, sharp, index)
        self.strings += 1

    def _add_distances(self, A: np.ndarray, allowed: np.ndarray) -> None:
        n = A.shape[-1]
        d = (np.arange(n)[:, None] - np.arange(n)[None, :] + self.max_len - 1).ravel()
        P = self.dist_sum.shape[-1]
        for l in range(self.L):
            for h in range(self.H):
                self.dist_sum[l, h] += np.bincount(d, weights=A[l, h].ravel(), minlength=P)
        self.dist_count += np.bincount(d[allowed.ravel()], minlength=len(self.dist_count))

    def _add_offsets(
        self,
        a: int,
        ends: np.ndarray,
        colsum: np.ndarray,
        n: int,
        sums: np.ndarray | None = None,
        diff: np.ndarray | None = None,
    ) -> None:
        sums = self.off_sum if sums is None else sums
        diff = self.off_diff if diff is None else diff
        for o, delta in enumerate(self.offsets):
            keys = ends + delta
            keys = keys[(keys >= 0) & (keys < n)]
            if len(keys) == 0:
                continue
            sums[:, :, a, o] += colsum[:, :, keys].sum(-1)
            # queries that may attend to key k: i ≥ k (causal) or every i; distances i − k
            lo = np.zeros_like(keys) if self.causal else -keys
            hi = n - 1 - keys
            np.add.at(diff[a, o], lo + self.max_len - 1, 1)
            np.add.at(diff[a, o], hi + self.max_len, -1)

    def _add_end_to_end(self, A: np.ndarray, sharp: np.ndarray, index: np.ndarray) -> None:
        r_lo = self.adjacency[0]
        for q, lq in enumerate(self.levels):
            queries = np.flatnonzero(sharp == lq)
            for c, lk in enumerate(self.levels):
                keys = np.flatnonzero(sharp == lk)
                if not len(queries) or not len(keys) or lk >= len(index):
                    continue
                i = np.repeat(queries, len(keys))  # every (query, key) pair
                k = np.tile(keys, len(queries))
                r = index[lk, i] - index[lk, k]
                keep = (r >= r_lo) & (r <= self.adjacency[-1]) & (index[lk, i] >= 0)
                keep &= index[lk, k] >= 0
                if self.causal:
                    keep &= k <= i
                i, k, r = i[keep], k[keep], r[keep] - r_lo
                if not len(i):
                    continue
                P = self.e2e_count.shape[-1]
                flat = r * P + (i - k + self.max_len - 1)
                self.e2e_count[q, c] += np.bincount(
                    flat, minlength=self.e2e_count[q, c].size
                ).reshape(self.e2e_count[q, c].shape)
                w = A[:, :, i, k]  # (L, H, pairs)
                for j in np.unique(r):
                    self.e2e_sum[:, :, q, c, j] += w[:, :, r == j].sum(-1)

    def _add_adjacency(self, a: int, ends: np.ndarray, A: np.ndarray) -> None:
        for j, r in enumerate(self.adjacency):
            if len(ends) <= abs(r):
                continue
            i, k = (ends[r:], ends[: len(ends) - r]) if r >= 0 else (ends[:r], ends[-r:])
            self.adj_sum[:, :, a, j] += A[:, :, i, k].sum(-1)
            np.add.at(self.adj_count[a, j], i - k + self.max_len - 1, 1)

    def mean_by_distance(self) -> np.ndarray:
        """Ā (L, H, 2·max_len − 1), NaN at distances never seen."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.dist_count > 0, self.dist_sum / self.dist_count, np.nan)

    def result(self) -> dict[str, Any]:
        abar = self.mean_by_distance()
        abar0 = np.nan_to_num(abar)
        seen = np.flatnonzero(self.dist_count > 0)
        off_n = np.cumsum(self.off_diff, axis=-1)[..., :-1]  # (levels, δ, P)
        off = _mean_b(self.off_sum, off_n, abar0)
        adj = _mean_b(self.adj_sum, self.adj_count, abar0)
        sharp_n = np.cumsum(self.sharp_diff, axis=-1)[..., :-1]
        sharp = _mean_b(self.sharp_sum, sharp_n, abar0)
        e2e = _mean_b(self.e2e_sum, self.e2e_count, abar0)
        return {
            "strings": self.strings,
            "distance": {
                "p": (seen - (self.max_len - 1)).tolist(),
                "mean": _round(abar[:, :, seen]),
                "pairs": self.dist_count[seen].astype(int).tolist(),
            },
            "targets": self.kind,
            "targets_note": NOTES[self.kind],
            "levels": self.levels,
            "offset": {
                "delta": self.offsets,
                "mean_B": _round(off),
                "pairs": off_n.sum(-1).astype(int).tolist(),
            },
            "adjacency": {
                "r": self.adjacency,
                "mean_B": _round(adj),
                "pairs": self.adj_count.sum(-1).astype(int).tolist(),
            },
            "level_names": target_names(self.kind, self.levels),
            "offset_sharp": {
                "delta": self.offsets,
                "mean_B": _round(sharp),
                "pairs": sharp_n.sum(-1).astype(int).tolist(),
                "classes": "key − δ is an NT-end of class b♯ = level (disjoint)",
            },
            "end_to_end": {
                "r": self.adjacency,
                "mean_B": _round(e2e),  # (L, H, query class ℓ', key class ℓ, r)
                "pairs": self.e2e_count.sum(-1).astype(int).tolist(),
                "axes": "layer, head, query class b♯(i) = ℓ', key class b♯(k) = ℓ, "
                "r = p_ℓ(i) − p_ℓ(k)",
            },
        }


def _sharp_and_index(
    boundaries: np.ndarray, b_sharp: np.ndarray | None, index: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """b♯ and p_ℓ of one string: given, or derived from its boundaries (layered grammars)."""
    if b_sharp is None:
        first = boundaries.argmax(axis=0)
        b_sharp = np.where(boundaries.any(axis=0), first, -1)
    if index is None:
        ends = boundaries.astype(np.int64)
        index = np.cumsum(ends, axis=1) - ends
    return b_sharp, index


def _mean_b(sum_a: np.ndarray, count: np.ndarray, abar: np.ndarray) -> np.ndarray:
    """(L, H, sets...) mean of B = (Σ A − Σ_p n(p) Ā_p) / Σ_p n(p); NaN for empty sets."""
    expected = np.einsum("...p,lhp->lh...", count, abar)
    n = count.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (sum_a - expected) / n, np.nan)


def _round(x: np.ndarray, digits: int = 8) -> list:
    """Nested lists for JSON, NaN as null."""
    r = np.round(x.astype(float), digits).astype(object)
    r[np.isnan(x.astype(float))] = None
    return r.tolist()


def attention_levels(depth: int) -> list[int]:
    """Levels worth a curve: all but the root (whose one NT-end is the string's last token)."""
    return list(range(1, depth))


def canon_note(canon: str, kernel: int) -> dict[str, str]:
    """On a model with Canon layers, the analyses (Results 6-9) see only part of the mixing."""
    if not canon:
        return {}
    return {
        "canon": canon,
        "note": f"this model has Canon layers ({canon}, kernel {kernel}): local information also "
        f"flows outside attention, through causal convolutions over the last {kernel} tokens, so "
        "attention statistics show only part of how tokens are mixed (a boundary or a recent "
        "token can be read without attending to it)",
    }


def attention_run(
    run_dir: str,
    n_strings: int = 64,
    seed: int = 0,
    threads: int = 1,
    quiet: bool = True,
    step: int | None = None,
    device: str = "cpu",
    max_adjacency: int = MAX_ADJACENCY,
    plots: bool = True,
) -> dict[str, Any]:
    """Attention statistics of a run on fresh strings; writes RUN_DIR/attention/attention.json."""
    from cfglab.interpret.probe_data import dropped_note, probe_strings_counted
    from cfglab.progress import work_progress
    from cfglab.runs import load_run
    from cfglab.threads import set_threads

    set_threads(threads)
    started = time.perf_counter()
    loaded = load_run(run_dir, step=step, device=device)
    config = loaded.config
    result: dict[str, Any] = {
        "run": str(Path(run_dir).resolve()),
        "step": loaded.step,
        "pe": config.pe,
        "bidirectional": config.pe == "mlm",
        **canon_note(config.canon, config.canon_kernel),
    }
    if config.pe in POSITION_ONLY:
        result.update(
            meaningful=False,
            reason=(
                f"not meaningful for {config.pe}: {POSITION_ONLY[config.pe]}, so attention is "
                "explained by distance by construction and B = A − Ā carries no information"
            ),
        )
        _write(Path(run_dir), result, plots=False)
        return result
    samples, dropped, drawn = probe_strings_counted(loaded.grammar, n_strings, config.context, seed)
    samples, kind = target_view(samples)
    lengths = np.diff(samples.offsets)
    stats = AttentionStats(
        config.layers,
        config.heads,
        int(lengths.max()),
        attention_levels(samples.depth),
        causal=config.pe != "mlm",
        max_adjacency=max_adjacency,
        kind=kind,
    )
    with work_progress("attention", len(samples), quiet, unit="strings") as advance:
        b_sharp, index = samples.b_sharp, samples.ancestor_index
        for i, maps in _string_maps(loaded.model, samples, len(loaded.grammar.terminals), device):
            lo, hi = samples.offsets[i], samples.offsets[i + 1]
            stats.add(maps, samples.boundaries[:, lo:hi], b_sharp[lo:hi], index[:, lo:hi])
            advance(1)
    result.update(
        meaningful=True,
        dropped_too_long=dropped,
        drawn=drawn,
        dropped_note=dropped_note(dropped, drawn, config.context),
        **stats.result(),
    )
    result["seconds"] = round(time.perf_counter() - started, 2)
    _write(Path(run_dir), result, plots)
    return result


def _string_maps(
    model: Any, samples: Any, n_terminals: int, device: str, budget: float = 5e7
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (string index, (L, H, n, n) maps among its tokens), batching strings of equal length.

    Equal lengths keep padding out of a bidirectional model's attention; batches are sized so a
    batch's maps stay under `budget` numbers.
    """
    import torch

    from cfglab.data.vocab import Vocab

    vocab = Vocab(n_terminals)
    lengths = np.diff(samples.offsets)
    cfg = model.cfg
    for n in np.unique(lengths):
        same = np.flatnonzero(lengths == n)
        size = max(1, int(budget // (cfg.n_layer * cfg.n_head * (n + 2) ** 2)))
        for lo in range(0, len(same), size):
            group = same[lo : lo + size]
            idx = np.empty((len(group), n + 2), dtype=np.int64)
            idx[:, 0], idx[:, -1] = vocab.bos, vocab.eos
            for row, s in enumerate(group):
                idx[row, 1:-1] = samples.string(s)
            with torch.no_grad():
                maps = model.attention_maps(torch.from_numpy(idx).to(device)).float().cpu()
            maps = maps[:, :, :, 1 : n + 1, 1 : n + 1].numpy()  # (L, B, H, n, n)
            for row, s in enumerate(group):
                yield int(s), maps[:, row]


def _write(run_dir: Path, result: dict[str, Any], plots: bool) -> None:
    from cfglab.runs import write_atomic

    out = run_dir / "attention"
    out.mkdir(parents=True, exist_ok=True)
    if plots:
        from cfglab.interpret.plots import (
            plot_attention_boundaries,
            plot_attention_distance,
            plot_attention_end_to_end,
        )

        result["plots"] = [
            str(plot_attention_distance(result, out / "distance.png")),
            str(plot_attention_boundaries(result, out / "boundaries.png")),
            str(plot_attention_end_to_end(result, out / "end_to_end.png")),
        ]
    write_atomic(out / "attention.json", json.dumps(result, indent=1).encode())
