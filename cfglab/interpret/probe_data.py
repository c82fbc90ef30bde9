"""Probe data: fresh strings with their tree labels, the control task and the majority baseline.

Labels are the paper's (Part 1, §4.1): s_l(i), the level-l ancestor of token i, and b_l(i), whether
token i ends it; on an implicit grammar (Result 10) also t(i), the hidden terminal whose bag token
i was drawn from (its lowest ancestor, whatever its depth). Numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cfglab.errors import CfglabError

PROBE_STREAM = 0x9B0BE  # seed tag: probe strings are drawn apart from every training stream


@dataclass(frozen=True)
class Target:
    kind: str  # "ancestor", "boundary", or "terminal" (the hidden terminal, implicit grammars)
    level: int  # tree depth of the ancestor (= level for the paper's layered grammars);
    # for "terminal" the deepest level (where a layered grammar's hidden terminals all sit)
    classes: int


@dataclass
class ProbeScores:
    """Held-out accuracy per target (NaN where a score does not apply or has no positions)."""

    all: np.ndarray  # (G,) multi-head probe, every labelled position
    at_end: np.ndarray  # (G,) multi-head probe, NT-end positions of the target's level
    diagonal: np.ndarray  # (G,) diagonal probe at NT-end positions (targets in `diagonal` only)
    tridiagonal: np.ndarray | None = None  # (G,) tridiagonal probe at NT-end positions
    all_ci: np.ndarray | None = None  # (G,) 95% half-width of `all`, strings as clusters
    at_end_ci: np.ndarray | None = None  # (G,) the same for `at_end`
    curve: list[list[float]] | None = None  # [step, held-out loss] while training


def ratio_ci(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
    """Σnum / Σden over strings, with the 95% half-width of a cluster (per-string) estimate:
    positions of one string are not independent, strings are."""
    total = float(den.sum())
    if total == 0:
        return float("nan"), float("nan")
    r = float(num.sum()) / total
    n = len(num)
    if n < 2:
        return r, float("nan")
    se = math.sqrt(n / (n - 1) * float(((num - r * den) ** 2).sum())) / total
    return r, 1.96 * se


# --- labels ------------------------------------------------------------------------------------


@dataclass
class ProbeData:
    """Probe strings with one label row per target, flat and aligned with `tokens`.

    Strings [0, n_train) train the probes, the rest score them. labels hold class indices, -1
    where a position has no label (its path ended above the level), and `classes` (never
    predicted) for an ancestor first seen in the held-out strings.
    """

    tokens: np.ndarray  # (total,) terminal ids
    offsets: np.ndarray  # (n+1,)
    n_train: int
    targets: list[Target]
    labels: np.ndarray  # (G, total) int64
    ends: np.ndarray  # (G, total) bool: b_l(i) at the target's level

    @property
    def classes(self) -> list[int]:
        return [t.classes for t in self.targets]

    @property
    def train_tokens(self) -> int:
        return int(self.offsets[self.n_train])


def make_probe_data(samples: Any, n_train: int) -> ProbeData:
    """Targets from sampled strings: every level whose training labels take two values or more."""
    split = int(samples.offsets[n_train])
    targets, labels, ends = [], [], []
    for kind in ("ancestor", "boundary"):
        for level in range(samples.depth):
            ancestor = samples.ancestors[level].astype(np.int64)
            end = samples.boundaries[level]
            if kind == "ancestor":
                y, k = _class_indices(ancestor, split)
            else:
                y, k = np.where(ancestor >= 0, end.astype(np.int64), -1), 2
            if len(np.unique(y[:split][y[:split] >= 0])) < 2:
                continue  # a constant target (the root's ancestor) teaches nothing
            targets.append(Target(kind, level, k))
            labels.append(y)
            ends.append(end)
    hidden = hidden_terminal_labels(samples)
    if hidden is not None and len(np.unique(hidden[:split])) >= 2:
        targets.append(Target("terminal", samples.depth - 1, len(samples.grammar.hidden)))
        labels.append(hidden)
        ends.append(np.ones(len(hidden), dtype=bool))  # every token ends its terminal's node
    if not targets:
        raise CfglabError("probe: the grammar's trees give no target with two or more labels")
    return ProbeData(
        samples.tokens, samples.offsets, n_train, targets, np.stack(labels), np.stack(ends)
    )


def hidden_terminal_labels(samples: Any) -> np.ndarray | None:
    """(total,) index into `grammar.hidden` of each token's hidden terminal (its lowest
    ancestor: the rules of a hidden terminal are its bag's unary `t -> token`); None for an
    ordinary grammar."""
    g = samples.grammar
    if not g.hidden:
        return None
    from cfglab.interpret.targets import HeightSamples

    anc = samples.ancestors
    if isinstance(samples, HeightSamples):  # rows are heights: ↑1, the parent, is row 1
        nt = anc[1]
    else:
        lowest = anc.shape[0] - 1 - np.argmax((anc >= 0)[::-1], axis=0)
        nt = anc[lowest, np.arange(anc.shape[1])]
    lookup = np.full(len(g.nonterminals), -1, dtype=np.int64)
    lookup[[g.nonterminals.index(t) for t in g.hidden]] = np.arange(len(g.hidden))
    return lookup[nt]


def _class_indices(raw: np.ndarray, split: int) -> tuple[np.ndarray, int]:
    """Nonterminal ids -> 0..K-1 in order of id, K from the training part; unseen ones -> K."""
    seen = np.unique(raw[:split][raw[:split] >= 0])
    lookup = np.full(int(max(raw.max(initial=0), seen.max(initial=0))) + 1, len(seen))
    lookup[seen] = np.arange(len(seen))
    return np.where(raw >= 0, lookup[np.maximum(raw, 0)], -1), len(seen)


def control_labels(data: ProbeData, ngram: int, seed: int) -> np.ndarray:
    """Hewitt & Liang's control task: a random label per token type, at the same positions.

    The type of position i is the n-gram of tokens ending at i (cut at the string's start);
    each type's label is drawn from the real target's training label distribution, so the
    control has the same classes and roughly the same majority rate, but only memorisation of
    types solves it.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, PROBE_STREAM, 1]))
    types = _ngram_types(data.tokens, data.offsets, ngram)
    n_types = int(types.max(initial=0)) + 1
    out = np.full_like(data.labels, -1)
    for g, k in enumerate(data.classes):
        y = data.labels[g]
        freq = np.bincount(y[: data.train_tokens][y[: data.train_tokens] >= 0], minlength=k)[:k]
        table = rng.choice(k, size=n_types, p=freq / freq.sum())
        out[g] = np.where(y >= 0, table[types], -1)
    return out


def _ngram_types(tokens: np.ndarray, offsets: np.ndarray, n: int) -> np.ndarray:
    """(total,) type index of the n-gram ending at each token (0 stands for 'before the start')."""
    base = int(tokens.max(initial=0)) + 2
    owner_start = np.repeat(offsets[:-1], np.diff(offsets))
    pos = np.arange(len(tokens))
    code = np.zeros(len(tokens), dtype=np.int64)
    for m in range(n):
        prev = pos - m
        sym = np.where(prev >= owner_start, tokens[np.maximum(prev, 0)].astype(np.int64) + 1, 0)
        code = code * base + sym
    return np.unique(code, return_inverse=True)[1].reshape(-1)


def majority_scores(data: ProbeData, labels: np.ndarray | None = None) -> ProbeScores:
    """Accuracy of always answering the most frequent training label (per target, per set)."""
    labels = data.labels if labels is None else labels
    split = data.train_tokens
    G = len(data.targets)
    acc_all, acc_end = np.full(G, np.nan), np.full(G, np.nan)
    for g, k in enumerate(data.classes):
        y = labels[g]
        for out, where in ((acc_all, y >= 0), (acc_end, (y >= 0) & data.ends[g])):
            train, test = y[:split][where[:split]], y[split:][where[split:]]
            if len(train) and len(test):
                out[g] = float(np.mean(test == np.bincount(train, minlength=k).argmax()))
    return ProbeScores(acc_all, acc_end, acc_end.copy(), acc_end.copy())


def probe_strings(grammar: Any, n: int, context: int, seed: int) -> tuple[Any, int]:
    """n fresh strings that fit the model's context with BOS and EOS; also how many were dropped."""
    samples, dropped, _ = probe_strings_counted(grammar, n, context, seed)
    return samples, dropped


def probe_strings_counted(grammar: Any, n: int, context: int, seed: int) -> tuple[Any, int, int]:
    """`probe_strings`, with how many strings were drawn to find them (for `dropped_note`)."""
    from cfglab.grammar.sample import sample

    rng = np.random.default_rng(np.random.SeedSequence([seed, PROBE_STREAM]))
    kept, dropped, have, drawn = [], 0, 0, 0
    for _ in range(20):
        s = sample(grammar, max(2 * (n - have), 16), rng)
        fits = np.flatnonzero(s.lengths + 2 <= context)
        dropped += len(s) - len(fits)
        drawn += len(s)
        kept.append((s, fits[: n - have]))
        have += len(kept[-1][1])
        if have == n:
            return _concat(kept), dropped, drawn
    raise CfglabError(
        f"probe: fewer than {n} of the grammar's strings fit the model's context of {context} "
        f"tokens (with BOS and EOS); {dropped} were too long"
    )


def dropped_note(dropped: int, drawn: int, context: int) -> str | None:
    """The sentence that says strings were left out for length (None when none were)."""
    if not dropped:
        return None
    return (
        f"{dropped} of {drawn} sampled strings longer than the context ({context} tokens with "
        "BOS and EOS) were left out"
    )


def _concat(parts: list[tuple[Any, np.ndarray]]) -> Any:
    """One Samples object holding the chosen strings of several draws, in order."""
    from cfglab.grammar.sample import Samples

    depth = max(s.depth for s, _ in parts)
    tokens, lengths, anc, bnd, rules = [], [], [], [], []
    for s, chosen in parts:
        for i in chosen:
            lo, hi = s.offsets[i], s.offsets[i + 1]
            pad = ((0, depth - s.depth), (0, 0))
            tokens.append(s.tokens[lo:hi])
            lengths.append(hi - lo)
            anc.append(np.pad(s.ancestors[:, lo:hi], pad, constant_values=-1))
            bnd.append(np.pad(s.boundaries[:, lo:hi], pad, constant_values=False))
            rules.append(np.pad(s.rules[:, lo:hi], pad, constant_values=-1))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return Samples(
        parts[0][0].grammar,
        np.concatenate(tokens),
        offsets,
        np.concatenate(anc, axis=1),
        np.concatenate(bnd, axis=1),
        np.concatenate(rules, axis=1),
    )
