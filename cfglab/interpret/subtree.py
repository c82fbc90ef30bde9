"""The subtree swap: replace a complete subtree by another derivation of the same nonterminal (same
length) and ask whether the model's continuation follows the subtree's NT-end.

A swap takes a sampled string s and one of its nodes A spanning tokens [a, b) with b < len(s), and
a node of the same nonterminal A and length from another sampled string, with other tokens Y. The
donor s′ = s[:a] Y s[b:] is in the language (context-freeness), and for a prefix length k > b
(at least one token of the continuation) the two prefixes differ only inside the span. The
chart gives both next-token rows exactly; for an unambiguous prefix they are equal (the
continuation of a CFG depends on the pending nonterminals, not on how A was derived), so
`true_tv`, the mean total variation between them, says how much the grammar itself lets the
inside matter. A model that has learned the grammar should not care either: `model_kl` is its
mean KL(m(p) ‖ m(p′)) beside `random_pair_kl` (equal-length prefix pairs with different truth,
from the main experiment).

Patches, p′'s residual stream into p's run at each layer (`restored` as in
cfglab.interpret.patching, so 1 = the model's prediction on the donor):
  subtree        the span's positions a+1..b: at layer 0 exactly everything that differs
                 (restored is 1 by construction; a test)
  nt_end         the NT-end position b only: does the continuation read A's summary there?
                 (never the last position, so after the last layer every set restores 0)
  inside_random  one other position of the span, drawn per swap: the control for nt_end

Beyond the paper; cfglab's own construction (the chart makes the comparison exact).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from cfglab.data.vocab import Vocab


@dataclass(frozen=True)
class Node:
    string: int
    start: int  # first token
    end: int  # one past the last token
    nt: int


def nodes(samples: Any) -> list[Node]:
    """Every nonterminal node of every sampled string, from the per-depth ancestor labels."""
    out: list[Node] = []
    for i in range(len(samples)):
        anc, _ = samples.labels(i)
        index = samples.ancestor_index[:, samples.offsets[i] : samples.offsets[i + 1]]
        for d in range(anc.shape[0]):
            row = index[d]
            for p in np.unique(row[row >= 0]):
                where = np.flatnonzero(row == p)
                out.append(Node(i, int(where[0]), int(where[-1]) + 1, int(anc[d, where[0]])))
    return out


@dataclass
class Swaps:
    """Base and donor inputs (BOS prefix, EOS padding) and their spans, one row per swap."""

    base: np.ndarray  # (N, T)
    donor: np.ndarray  # (N, T)
    last: np.ndarray  # (N,) k
    span: np.ndarray  # (N, 2) positions a+1 .. b of the swapped subtree, inclusive
    base_truth: np.ndarray  # (N, 1+T_terminals)
    donor_truth: np.ndarray


def make_swaps(
    samples: Any, judge: Any, n: int, seed: int, max_tokens: int | None = None
) -> Swaps | None:
    """Up to n swaps drawn from the samples' nodes; None when the grammar allows none."""
    rng = np.random.default_rng(seed)
    strings = samples.strings()
    every = nodes(samples)
    groups: dict[tuple[int, int], list[Node]] = defaultdict(list)
    for node in every:
        groups[(node.nt, node.end - node.start)].append(node)
    candidates = [
        node
        for node in every
        if node.end - node.start >= 2 and node.end < len(strings[node.string])
    ]
    chosen: list[tuple[np.ndarray, np.ndarray, int, int, int]] = []
    for _ in range(20 * n):
        if len(chosen) == n or not candidates:
            break
        x = candidates[rng.integers(len(candidates))]
        s = strings[x.string]
        inside = s[x.start : x.end]
        others = [
            y
            for y in groups[(x.nt, x.end - x.start)]
            if not np.array_equal(strings[y.string][y.start : y.end], inside)
        ]
        top = len(s) if max_tokens is None else min(len(s), max_tokens - 1)
        if not others or top <= x.end:
            continue
        y = others[rng.integers(len(others))]
        swapped = np.concatenate([s[: x.start], strings[y.string][y.start : y.end], s[x.end :]])
        k = int(rng.integers(x.end + 1, top + 1))  # at least one token after the subtree
        chosen.append((s, swapped, k, x.start, x.end))
    if not chosen:
        return None
    return _assemble(chosen, judge)


def _assemble(chosen: list[tuple[np.ndarray, np.ndarray, int, int, int]], judge: Any) -> Swaps:
    vocab = Vocab(judge.n_terminals)
    N, T = len(chosen), max(c[2] for c in chosen) + 1
    base = np.full((N, T), vocab.eos, dtype=np.int64)
    donor = base.copy()
    base[:, 0] = donor[:, 0] = vocab.bos
    for n, (s, swapped, k, _, _) in enumerate(chosen):
        base[n, 1 : k + 1], donor[n, 1 : k + 1] = s[:k], swapped[:k]
    rows = judge.next_tokens([c[0] for c in chosen] + [c[1] for c in chosen])
    return Swaps(
        base=base,
        donor=donor,
        last=np.array([c[2] for c in chosen], dtype=np.int64),
        span=np.array([(a + 1, b) for *_, a, b in chosen], dtype=np.int64),
        base_truth=np.stack([rows[n][c[2]] for n, c in enumerate(chosen)]),
        donor_truth=np.stack([rows[N + n][c[2]] for n, c in enumerate(chosen)]),
    )


def swap_sets(swaps: Swaps, seed: int) -> dict[str, np.ndarray]:
    """The three position sets (see the module docstring) as (N, T) masks."""
    rng = np.random.default_rng(seed)
    pos = np.arange(swaps.base.shape[1])[None, :]
    lo, hi = swaps.span[:, :1], swaps.span[:, 1:]
    pick = np.array([rng.integers(a, b) for a, b in swaps.span])[:, None]  # in a+1 .. b-1
    return {"subtree": (pos >= lo) & (pos <= hi), "nt_end": pos == hi, "inside_random": pos == pick}


def subtree_experiment(
    model: Any, swaps: Swaps, layers: list[int], seed: int, device: str, random_pair_kl: float
) -> dict[str, Any]:
    """The swap's patches (cfglab.interpret.patching.patch_model) and its exact summary."""
    from cfglab.interpret.patching import Pairs, patch_model

    pairs = Pairs(
        swaps.base,
        swaps.donor,
        swaps.last,
        swaps.base_truth,
        swaps.donor_truth,
        np.zeros((0, *swaps.base.shape), dtype=bool),
    )
    vocab = Vocab(swaps.base_truth.shape[1] - 1)
    out = patch_model(model, pairs, layers, swap_sets(swaps, seed), vocab, seed, device)
    tv = 0.5 * np.abs(swaps.base_truth - swaps.donor_truth).sum(axis=1)
    return {
        "swaps": len(swaps.last),
        "true_tv": round(float(tv.mean()), 5),
        "truth_equal": round(float((tv < 1e-9).mean()), 4),
        "model_kl": out["reference"]["kl_model_base_to_donor"],
        "random_pair_kl": random_pair_kl,
        "mean_span": round(float((swaps.span[:, 1] - swaps.span[:, 0] + 1).mean()), 2),
        "mean_after": round(float((swaps.last - swaps.span[:, 1]).mean()), 2),
        **out,
    }
