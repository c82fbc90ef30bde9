"""Multi-head linear probes: is the parse tree linearly readable from a layer's hidden states?

The paper's probe (Allen-Zhu & Li, Part 1, §4) on hidden states E_k of one layer:

    G_i = Σ_r Σ_{k≤i} w_{r,i→k} f_r(E_k),   w_{r,i→k} = softmax_k ⟨P_{i,r}, P_{k,r}⟩

P_{i,r} are trainable position vectors (the weights never look at the hidden states) and f_r is
linear, so G is linear in the hidden states. For a bidirectional (mlm) model k runs over the whole
string. Targets, per tree level l: the ancestor nonterminal s_l(i) and the NT-end bit b_l(i).
Every target has its own probe (its own P and f); they are trained together only because their
parameters are disjoint, which makes that the same as training them one by one.

Scores, on held-out strings:
  ancestor          multi-head probe for s_l(i), all positions
  ancestor_at_end   the same probe scored where b_l(i) = 1
  diagonal_at_end   the diagonal variant G_i = f(E_i), trained and scored where b_l(i) = 1
  boundary          multi-head probe for b_l(i), all positions
Controls (a probe is only as good as what it beats):
  untrained         the same probes on an untrained model of the same architecture (GPT_rand)
  majority          the most frequent training label of each target
  control           Hewitt & Liang's control task: every token type (the n-gram ending at the
                    token; `control_ngram`) gets a random label drawn from the target's label
                    distribution; selectivity = real − control accuracy
  output_only       the probes on the model's next-token log-probabilities instead of its hidden
                    states: what the hidden states know beyond the output

Everything runs from plain arguments (`probe_run(run_dir, ...)`), so a sweep can ship it as a
Ray task; this module never imports Ray.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from cfglab.errors import CfglabError
from cfglab.threads import set_threads

if TYPE_CHECKING:
    from cfglab.models.gpt import Transformer

PROBE_STREAM = 0x9B0BE  # seed tag: probe strings are drawn apart from every training stream
POS_INIT_STD = 0.7  # P init: ⟨P_i, P_i⟩ ≈ 8 against ±2 elsewhere, so training starts near-diagonal
METRICS = ("ancestor", "ancestor_at_end", "diagonal_at_end", "boundary")


@dataclass(frozen=True)
class ProbeSettings:
    n_train: int = 384  # fresh strings to train each probe on
    n_test: int = 192  # held-out strings to score on
    heads: int = 4  # r = 1..heads in the probe's sum
    pos_dim: int = 16  # dimension of the position vectors P_{i,r}
    epochs: int = 6  # passes over the training strings (3 -> 12 raised scores by <= 0.05)
    min_steps: int = 60  # more passes when the strings are few: a short run stays below majority
    batch: int = 16  # strings per optimisation step
    lr: float = 3e-2  # Adam, cosine-decayed to 0
    control_ngram: int = 3  # control-task token type: the n-gram ending at the token
    seed: int = 0


@dataclass(frozen=True)
class Target:
    kind: str  # "ancestor" or "boundary"
    level: int  # tree depth of the ancestor (= level for the paper's layered grammars)
    classes: int


@dataclass
class ProbeScores:
    """Held-out accuracy per target (NaN where a score does not apply or has no positions)."""

    all: np.ndarray  # (G,) multi-head probe, every labelled position
    at_end: np.ndarray  # (G,) multi-head probe, NT-end positions of the target's level
    diagonal: np.ndarray  # (G,) diagonal probe at NT-end positions (targets in `diagonal` only)


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
    if not targets:
        raise CfglabError("probe: the grammar's trees give no target with two or more labels")
    return ProbeData(
        samples.tokens, samples.offsets, n_train, targets, np.stack(labels), np.stack(ends)
    )


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
    return ProbeScores(acc_all, acc_end, acc_end.copy())


# --- the probes --------------------------------------------------------------------------------


class MultiHeadProbe(nn.Module):
    """The paper's probe for several targets at once, each with its own P and f (disjoint)."""

    def __init__(
        self, dim: int, classes: Sequence[int], heads: int, pos_dim: int, max_len: int, causal: bool
    ) -> None:
        super().__init__()
        self.classes, self.heads, self.causal = list(classes), heads, causal
        self.f = nn.Linear(dim, heads * sum(self.classes))  # f_r for every target and head
        self.pos = nn.Parameter(
            torch.randn(len(self.classes), heads, max_len, pos_dim) * POS_INIT_STD
        )  # (G, H, max_len, d')

    def forward(self, x: Tensor, mask: Tensor) -> list[Tensor]:
        """x (B, T, C), mask (B, T) real positions -> one (B, T, K_g) logit tensor per target."""
        B, T, _ = x.shape
        H = self.heads
        f = self.f(x)  # f_r(E_k) for every target and head: (B, T, Σ H·K_g)
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        out = []
        for g, part in enumerate(f.split([H * k for k in self.classes], dim=-1)):
            K = self.classes[g]
            P = self.pos[g, :, :T]  # (H, T, d')
            logits = P @ P.transpose(1, 2)  # (H, T, T)  ⟨P_{i,r}, P_{k,r}⟩
            values = part.view(B, T, H, K).permute(2, 1, 0, 3)  # (H, T, B, K)
            if self.causal:  # padding comes after every real key: a plain softmax is exact
                w = torch.softmax(logits.masked_fill(future, float("-inf")), dim=-1)
                mixed = (w @ values.reshape(H, T, B * K)).sum(0)  # (T, B·K)
            else:
                mixed = self._bidirectional(logits, values, mask)
            out.append(mixed.view(T, B, K).transpose(0, 1))  # (B, T, K)
        return out

    @staticmethod
    def _bidirectional(logits: Tensor, values: Tensor, mask: Tensor) -> Tensor:
        """Σ_r softmax over each string's own keys (not its padding): (T, B·K)."""
        H, T, B, K = values.shape
        m = mask.to(values.dtype)
        e = (logits - logits.amax(-1, keepdim=True).detach()).exp()  # unnormalised w
        num = (e @ (values * m.T[None, :, :, None]).reshape(H, T, B * K)).view(H, T, B, K)
        den = (e @ m.T).clamp_min(1e-30)  # (H, T, B)
        return (num / den[..., None]).sum(0).reshape(T, B * K)


@dataclass
class _Batches:
    """Strings grouped by length (little padding); idx (B, T) flat positions, -1 = padding."""

    idx: list[Tensor]
    mask: list[Tensor]


def _batches(offsets: np.ndarray, strings: range, size: int) -> _Batches:
    lengths = np.diff(offsets)
    order = sorted(strings, key=lambda s: lengths[s])
    idx, mask = [], []
    for lo in range(0, len(order), size):
        group = order[lo : lo + size]
        T = int(lengths[group].max())
        pos = np.arange(T)[None, :]
        valid = pos < lengths[group][:, None]
        flat = np.where(valid, offsets[group][:, None] + pos, -1)
        idx.append(torch.from_numpy(flat))
        mask.append(torch.from_numpy(valid))
    return _Batches(idx, mask)


def fit_probes(
    features: Tensor,
    data: ProbeData,
    settings: ProbeSettings,
    causal: bool,
    labels: np.ndarray | None = None,
    diagonal: Sequence[int] = (),
    advance: Callable[[int], None] | None = None,
) -> ProbeScores:
    """Train one multi-head probe per target on `features` (total, C); score on held-out strings.

    `labels` replaces data.labels (the control task); `diagonal` lists the targets that also get
    a diagonal probe, trained and scored at their NT-end positions.
    """
    torch.manual_seed(settings.seed)
    labels_t = torch.from_numpy(data.labels if labels is None else labels)  # (G, total)
    ends_t = torch.from_numpy(data.ends)
    x_all = _standardise(features.float(), data.train_tokens)
    n = len(data.offsets) - 1
    train = _batches(data.offsets, range(data.n_train), settings.batch)
    test = _batches(data.offsets, range(data.n_train, n), settings.batch)
    max_len = int(np.diff(data.offsets).max())
    probe = MultiHeadProbe(
        x_all.size(1), data.classes, settings.heads, settings.pos_dim, max_len, causal
    )
    diag_classes = [data.classes[g] for g in diagonal]
    diag = nn.Linear(x_all.size(1), max(sum(diag_classes), 1))
    params = list(probe.parameters()) + list(diag.parameters())
    opt = torch.optim.Adam(params, lr=settings.lr)
    epochs = max(settings.epochs, math.ceil(settings.min_steps / len(train.idx)))
    total = epochs * len(train.idx)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total))
    )
    gen = torch.Generator().manual_seed(settings.seed)
    for _ in range(epochs):
        for b in torch.randperm(len(train.idx), generator=gen).tolist():
            x, y, end, mask = _gather(x_all, labels_t, ends_t, train.idx[b], train.mask[b])
            loss = _loss(probe(x, mask), y) + _loss(
                _split(diag(x), diag_classes), _only_ends(y, end, diagonal)
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if advance:
                advance(1)
    return _score(probe, diag, diagonal, diag_classes, x_all, labels_t, ends_t, test)


def _standardise(x: Tensor, n_train_tokens: int) -> Tensor:
    """Zero mean, unit variance per feature on the training tokens (affine: still linear)."""
    ref = x[:n_train_tokens]
    return (x - ref.mean(0)) / (ref.std(0) + 1e-6)


def _gather(
    x_all: Tensor, labels: Tensor, ends: Tensor, idx: Tensor, mask: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    safe = idx.clamp(min=0)
    y = labels[:, safe].masked_fill(~mask, -1)  # (G, B, T)
    return x_all[safe], y, ends[:, safe] & mask, mask


def _only_ends(y: Tensor, end: Tensor, rows: Sequence[int]) -> Tensor:
    if not rows:
        return y[:0]
    rows_t = torch.tensor(list(rows))
    return y[rows_t].masked_fill(~end[rows_t], -1)


def _split(logits: Tensor, classes: Sequence[int]) -> list[Tensor]:
    return list(logits[..., : sum(classes)].split(list(classes), dim=-1)) if classes else []


def _loss(outs: list[Tensor], y: Tensor) -> Tensor:
    total = torch.zeros(())
    for out, yg in zip(outs, y):
        keep = yg >= 0
        if keep.any():
            total = total + F.cross_entropy(out[keep], yg[keep])
    return total


@torch.no_grad()
def _score(
    probe: MultiHeadProbe,
    diag: nn.Linear,
    diagonal: Sequence[int],
    diag_classes: list[int],
    x_all: Tensor,
    labels: Tensor,
    ends: Tensor,
    test: _Batches,
) -> ProbeScores:
    G = len(probe.classes)
    hits = np.zeros((3, G))
    counts = np.zeros((3, G))
    for idx, mask in zip(test.idx, test.mask):
        x, y, end, mask = _gather(x_all, labels, ends, idx, mask)
        for g, out in enumerate(probe(x, mask)):
            right = out.argmax(-1) == y[g]
            for row, where in ((0, y[g] >= 0), (1, (y[g] >= 0) & end[g])):
                hits[row, g] += right[where].sum().item()
                counts[row, g] += where.sum().item()
        for j, out in enumerate(_split(diag(x), diag_classes)):
            g = diagonal[j]
            where = (y[g] >= 0) & end[g]
            hits[2, g] += (out.argmax(-1) == y[g])[where].sum().item()
            counts[2, g] += where.sum().item()
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(counts > 0, hits / counts, np.nan)
    return ProbeScores(acc[0], acc[1], acc[2])


# --- features from a model ---------------------------------------------------------------------


@torch.no_grad()
def model_features(
    model: Transformer,
    tokens: np.ndarray,
    offsets: np.ndarray,
    n_terminals: int,
    layer: int | None,
    batch: int = 32,
    device: str = "cpu",
) -> Tensor:
    """(total, C) hidden states of `layer` at each string token, fed as [BOS] x [EOS].

    layer 0 is the embedding output, layer l the residual stream after block l; None gives the
    next-token log-probabilities instead (the output-only baseline). Decoders batch strings
    padded after EOS (a causal model never sees the padding); a bidirectional model would, so it
    only batches strings of equal length.
    """
    from cfglab.data.vocab import Vocab

    vocab = Vocab(n_terminals)
    lengths = np.diff(offsets)
    out: Tensor | None = None
    for group in _model_groups(lengths, batch, exact=not getattr(model, "causal", True)):
        T = int(lengths[group].max())
        idx = np.full((len(group), T + 2), vocab.eos, dtype=np.int64)
        idx[:, 0] = vocab.bos
        pos = np.arange(T)[None, :]
        valid = pos < lengths[group][:, None]
        idx[:, 1 : T + 1][valid] = tokens[(offsets[group][:, None] + pos)[valid]]
        x = torch.from_numpy(idx).to(device)
        h = (
            model.forward_hidden(x)[layer]
            if layer is not None
            else F.log_softmax(model(x)[0].float(), dim=-1)
        )
        h = h[:, 1 : T + 1].float().cpu()
        if out is None:
            out = torch.empty(len(tokens), h.size(-1))
        flat = torch.from_numpy((offsets[group][:, None] + pos)[valid])
        out[flat] = h[torch.from_numpy(valid)]
    assert out is not None
    return out


def _model_groups(lengths: np.ndarray, batch: int, exact: bool) -> list[np.ndarray]:
    order = np.argsort(lengths, kind="stable")
    if not exact:
        return [order[i : i + batch] for i in range(0, len(order), batch)]
    groups = []
    for n in np.unique(lengths):
        same = order[lengths[order] == n]
        groups += [same[i : i + batch] for i in range(0, len(same), batch)]
    return groups


def probe_strings(grammar: Any, n: int, context: int, seed: int) -> tuple[Any, int]:
    """n fresh strings that fit the model's context with BOS and EOS; also how many were dropped."""
    from cfglab.grammar.sample import sample

    rng = np.random.default_rng(np.random.SeedSequence([seed, PROBE_STREAM]))
    kept, dropped, have = [], 0, 0
    for _ in range(20):
        s = sample(grammar, max(2 * (n - have), 16), rng)
        fits = np.flatnonzero(s.lengths + 2 <= context)
        dropped += len(s) - len(fits)
        kept.append((s, fits[: n - have]))
        have += len(kept[-1][1])
        if have == n:
            return _concat(kept), dropped
    raise CfglabError(
        f"probe: fewer than {n} of the grammar's strings fit the model's context of {context} "
        f"tokens (with BOS and EOS); {dropped} were too long"
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


# --- one run -----------------------------------------------------------------------------------


def probe_run(
    run_dir: str,
    layers: Sequence[int] | None = None,
    n_strings: int = ProbeSettings.n_train,
    n_test: int = ProbeSettings.n_test,
    seed: int = 0,
    threads: int = 1,
    quiet: bool = True,
    step: int | None = None,
    device: str = "cpu",
    controls: bool = True,
    plots: bool = True,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Probe a run's layers (default: all, 0 = embeddings) beside every control.

    Writes RUN_DIR/probe/probe.json (and probe.png with `plots`) and returns the same dict.
    `controls=False` skips the untrained model, the control task and the output-only baseline.
    """
    from cfglab.progress import work_progress
    from cfglab.runs import load_run, untrained_model

    set_threads(threads)
    cfg = ProbeSettings(
        **{**(settings or {}), "n_train": n_strings, "n_test": n_test, "seed": seed}
    )
    started = time.perf_counter()
    loaded = load_run(run_dir, step=step, device=device)
    model, grammar, config = loaded.model, loaded.grammar, loaded.config
    n_layers = config.layers
    layers = list(range(n_layers + 1)) if layers is None else sorted(set(layers))
    if not layers or any(not 0 <= l <= n_layers for l in layers):
        raise CfglabError(f"probe: layers must lie in 0..{n_layers} (0 = embeddings), got {layers}")
    samples, dropped = probe_strings(grammar, cfg.n_train + cfg.n_test, config.context, seed)
    data = make_probe_data(samples, cfg.n_train)
    control = control_labels(data, cfg.control_ngram, seed) if controls else None
    ancestors = [g for g, t in enumerate(data.targets) if t.kind == "ancestor"]
    causal = config.pe != "mlm"
    T = len(grammar.terminals)
    rand = untrained_model(config, T, seed=seed + 1).to(device) if controls else None

    fits_per_layer = 1 + (2 if controls else 0)
    batches = math.ceil(cfg.n_train / cfg.batch)
    steps_per_fit = max(cfg.epochs, math.ceil(cfg.min_steps / batches)) * batches
    total = steps_per_fit * (fits_per_layer * len(layers) + (1 if controls else 0))
    result = _header(loaded, cfg, data, layers, dropped, causal)
    per_layer = []
    with work_progress("probe", total, quiet) as advance:

        def fit(
            features: Tensor, labels: np.ndarray | None = None, diag: Sequence[int] = ancestors
        ) -> ProbeScores:
            return fit_probes(features, data, cfg, causal, labels, diag, advance)

        for layer in layers:
            t0 = time.perf_counter()
            feats = model_features(model, data.tokens, data.offsets, T, layer, device=device)
            result["trained"][str(layer)] = _by_metric(data, fit(feats))
            if controls:
                assert rand is not None
                ctrl = _by_metric(data, fit(feats, control, ()))
                result["control"][str(layer)] = _pick(ctrl, ("ancestor", "boundary"))
                result["selectivity"][str(layer)] = _difference(result["trained"][str(layer)], ctrl)
                rfeats = model_features(rand, data.tokens, data.offsets, T, layer, device=device)
                result["untrained"][str(layer)] = _by_metric(data, fit(rfeats))
            per_layer.append(round(time.perf_counter() - t0, 2))
        if controls:
            logp = model_features(model, data.tokens, data.offsets, T, None, device=device)
            result["output_only"] = _by_metric(data, fit(logp))
    result["majority"] = _by_metric(data, majority_scores(data))
    result["seconds"] = {
        "total": round(time.perf_counter() - started, 2),
        "per_layer": dict(zip(map(str, layers), per_layer)),
    }
    _write(Path(run_dir), result, plots)
    return result


def _header(
    loaded: Any, cfg: ProbeSettings, data: ProbeData, layers: list[int], dropped: int, causal: bool
) -> dict[str, Any]:
    lengths = np.diff(data.offsets)
    levels: dict[str, list[int]] = {"ancestor": [], "boundary": []}
    classes: dict[str, dict[str, int]] = {"ancestor": {}, "boundary": {}}
    for t in data.targets:
        levels[t.kind].append(t.level)
        classes[t.kind][str(t.level)] = t.classes
    return {
        "run": str(Path(loaded.run.path).resolve()),
        "step": loaded.step,
        "pe": loaded.config.pe,
        "bidirectional": not causal,
        "settings": asdict(cfg),
        "control_task": f"random labels per {cfg.control_ngram}-gram type ending at the token "
        "(Hewitt & Liang), drawn from each target's label distribution",
        "strings": {
            "train": cfg.n_train,
            "test": cfg.n_test,
            "dropped_too_long": dropped,
            "mean_length": round(float(lengths.mean()), 1),
        },
        "layers": layers,
        "levels": levels,
        "classes": classes,
        "trained": {},
        "untrained": {},
        "control": {},
        "selectivity": {},
        "output_only": None,
        "majority": None,
    }


def _by_metric(data: ProbeData, s: ProbeScores) -> dict[str, dict[str, float | None]]:
    """{metric: {level: accuracy}} with JSON nulls where a score does not apply."""
    out: dict[str, dict[str, float | None]] = {m: {} for m in METRICS}
    for g, t in enumerate(data.targets):
        if t.kind == "boundary":
            out["boundary"][str(t.level)] = _num(s.all[g])
        else:
            out["ancestor"][str(t.level)] = _num(s.all[g])
            out["ancestor_at_end"][str(t.level)] = _num(s.at_end[g])
            out["diagonal_at_end"][str(t.level)] = _num(s.diagonal[g])
    return out


def _num(x: float) -> float | None:
    return None if np.isnan(x) else round(float(x), 4)


def _pick(d: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {k: d[k] for k in keys}


def _difference(
    real: dict[str, dict[str, float | None]], control: dict[str, dict[str, float | None]]
) -> dict[str, dict[str, float | None]]:
    return {
        m: {
            lv: None if a is None or (c := control[m].get(lv)) is None else round(a - c, 4)
            for lv, a in real[m].items()
        }
        for m in ("ancestor", "boundary")
    }


def _write(run_dir: Path, result: dict[str, Any], plots: bool) -> None:
    from cfglab.runs import write_atomic

    out = run_dir / "probe"
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "probe.json", json.dumps(result, indent=1).encode())
    if plots:
        from cfglab.interpret.plots import plot_probe

        result["plots"] = [str(plot_probe(result, out / "probe.png"))]
        write_atomic(out / "probe.json", json.dumps(result, indent=1).encode())
