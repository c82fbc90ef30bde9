"""The paper's multi-head linear probe (Part 1, §4), its local NT-end variants, and their training.

    G_i = Σ_r Σ_{k ∈ K(i)} w_{r,i→k} f_r(E_k),  w_{r,i→k} = softmax_{k ∈ K(i)} ⟨P_i,r, P_k,r⟩/√d′

P_{i,r} are trainable position vectors (the weights never look at the hidden states) and f_r is
linear, so G is linear in the hidden states E_k of one layer. K(i) is the scope:
  whole   every position of the string, k ∈ [len x]: the paper's probe, for a GPT as for an
          encoder (§4's equation sums over the whole string)
  prefix  k ≤ i only: a different question (what the prefix's states say), beyond the paper
Local probes at NT-ends (§4, "NT-end" probing; trained and scored where b_l(i) = 1):
  diagonal     G_i = f(E_i)                                  (δ = 0)
  tridiagonal  the multi-head probe above with k restricted to |k − i| ≤ 1 (the same G_i,
               P and f; with the prefix scope k ∈ {i−1, i}). Until issue 20 it was three
               independent linear maps f_-1(E_{i-1}) + f_0(E_i) + f_+1(E_{i+1}), a different
               (freer) reader; that form is gone
Position weights at every d′ (cfglab's choice; the paper's scaling of ⟨P_i, P_k⟩ could not be
read here): the logits are ⟨P_{i,r}, P_{k,r}⟩/√d′ and P starts at std √POS_SELF_SCORE·d′^(-1/4).
Both, because either alone leaves the spread depending on d′: unscaled products with a fixed
init (cfglab before issue 20: std 0.7) give a self-score ≈ 0.49·d′ ≈ 500 at d′ 1024 against
±16 elsewhere, a softmax one-hot to float precision whose gradient to P is ~3e-9 (issue 20),
so the probe could never leave the diagonal; 1/√d′ alone leaves a self-score growing as √d′.
With both, at init the self-score is POS_SELF_SCORE and the others ±POS_SELF_SCORE/√d′ at
every d′: a soft start near the diagonal (issue 20's off-diagonal task is learned at d′ 16,
256 and 1024 alike: tests/test_probes.py). The init spread is matched, not the dynamics.
Every target has its own probe (its own P and f); they are trained together only because their
parameters are disjoint, which makes that the same as training them one by one.

Training: Adam (or AdamW with `weight_decay`; `optimizer`, `betas`), cosine-decayed, for
`epochs` passes (or `steps` steps); with `val_strings` > 0, that many training strings are held
back, the held-out loss is recorded every `eval_every` steps (the curve goes into probe.json),
training stops after `patience` evaluations without improvement (0: never) and, with
`keep_best`, ends on the best held-out parameters. The paper's recipe as reproductions report it
(AdamW lr 3e-3, β (0.9, 0.98), decay 0.001, batch 60, 30k steps, fresh strings; the paper's own
text could not be read here) is sweeps/pe.yaml's; the cosine decay and the fixed string pool
are cfglab's, unconfirmed. CPU defaults are sized for the demo.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from cfglab.interpret.probe_data import ProbeData, ProbeScores, ratio_ci

POS_SELF_SCORE = 2.0  # mean scaled self-score ⟨P_i, P_i⟩/√d′ at init, at every d′
SCOPES = ("whole", "prefix")


def pos_init_std(pos_dim: int) -> float:
    """Init std of P: σ = √POS_SELF_SCORE · d′^(-1/4), so ⟨P_i, P_i⟩/√d′ ≈ POS_SELF_SCORE
    and ⟨P_i, P_k⟩/√d′ ≈ ±POS_SELF_SCORE/√d′ at every d′ (a soft start, near-uniform at d′ 1024)."""
    return math.sqrt(POS_SELF_SCORE) * pos_dim**-0.25


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
    scope: str = "whole"  # whole: k over the whole string (the paper's); prefix: k <= i only
    steps: int = 0  # optimisation steps; 0: `epochs` passes (at least `min_steps`)
    val_strings: int = 0  # training strings held back for the held-out loss; 0: no curve
    eval_every: int = 25  # steps between held-out losses
    patience: int = 0  # stop after this many held-out losses without improvement; 0: never
    keep_best: bool = True  # with val_strings: end on the best held-out parameters, not the last
    optimizer: str = "adam"  # a key of OPTIMIZERS
    betas: tuple[float, float] = (0.9, 0.999)  # Adam(W)'s moment decays
    weight_decay: float = 0.0  # AdamW's decoupled decay (Adam: none)


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,  # the recipe reproductions report for the paper's probe
}


# --- the probes --------------------------------------------------------------------------------


class MultiHeadProbe(nn.Module):
    """The paper's probe for several targets at once, each with its own P and f (disjoint).

    `band` restricts k to |k − i| ≤ band (the tridiagonal NT-end probe: band 1); None is the
    whole scope (or the prefix, with `causal`)."""

    def __init__(
        self,
        dim: int,
        classes: Sequence[int],
        heads: int,
        pos_dim: int,
        max_len: int,
        causal: bool,
        band: int | None = None,
    ) -> None:
        super().__init__()
        self.classes, self.heads, self.causal, self.band = list(classes), heads, causal, band
        width = heads * sum(self.classes)
        self.f = nn.Linear(dim, max(width, 1))  # f_r for every target and head (none: unused)
        self.scale = pos_dim**-0.5  # logits ⟨P_i, P_k⟩/√d′ (see the module docstring)
        self.pos = nn.Parameter(
            torch.randn(len(self.classes), heads, max_len, pos_dim) * pos_init_std(pos_dim)
        )  # (G, H, max_len, d')

    def logits(self, g: int, T: int) -> Tensor:
        """(H, T, T) ⟨P_{i,r}, P_{k,r}⟩/√d′ of target g, −inf where k lies outside K(i)."""
        P = self.pos[g, :, :T]  # (H, T, d')
        logits = (P @ P.transpose(1, 2)) * self.scale
        i = torch.arange(T, device=P.device)
        offset = i[None, :] - i[:, None]  # k − i
        outside = offset > 0 if self.causal else torch.zeros_like(offset, dtype=torch.bool)
        if self.band is not None:
            outside = outside | (offset.abs() > self.band)
        return logits.masked_fill(outside, float("-inf"))

    def weights(self, g: int, T: int) -> Tensor:
        """(H, T, T) w_{r,i→k} of target g on a string of length T (no padding)."""
        return torch.softmax(self.logits(g, T), dim=-1)

    def forward(self, x: Tensor, mask: Tensor) -> list[Tensor]:
        """x (B, T, C), mask (B, T) real positions -> one (B, T, K_g) logit tensor per target."""
        B, T, _ = x.shape
        H = self.heads
        f = self.f(x)[..., : H * sum(self.classes)]  # f_r(E_k), all g and r: (B, T, Σ H·K_g)
        out = []
        for g, part in enumerate(f.split([H * k for k in self.classes], dim=-1)):
            K = self.classes[g]
            logits = self.logits(g, T)  # (H, T, T)
            values = part.view(B, T, H, K).permute(2, 1, 0, 3)  # (H, T, B, K)
            if self.causal:  # padding comes after every real key: a plain softmax is exact
                w = torch.softmax(logits, dim=-1)
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

    `causal` is the prefix scope (k ≤ i). `labels` replaces data.labels (the control task);
    `diagonal` lists the targets that also get the diagonal and tridiagonal probes, trained and
    scored at their NT-end positions.
    """
    torch.manual_seed(settings.seed)
    dev = features.device  # probes train where the features are (a GPU in paper-scale sweeps)
    labels_t = torch.from_numpy(data.labels if labels is None else labels).to(dev)  # (G, total)
    ends_t = torch.from_numpy(data.ends).to(dev)
    x_all = _standardise(features.float(), data.train_tokens)
    n = len(data.offsets) - 1
    n_fit = data.n_train - min(settings.val_strings, data.n_train // 2)
    train = _batches(data.offsets, range(n_fit), settings.batch)
    val = _batches(data.offsets, range(n_fit, data.n_train), settings.batch)
    test = _batches(data.offsets, range(data.n_train, n), settings.batch)
    max_len = int(np.diff(data.offsets).max())
    probe = MultiHeadProbe(
        x_all.size(1), data.classes, settings.heads, settings.pos_dim, max_len, causal
    ).to(dev)
    local = LocalProbes(
        x_all.size(1),
        [data.classes[g] for g in diagonal],
        diagonal,
        causal,
        settings.heads,
        settings.pos_dim,
        max_len,
    )
    local = local.to(dev)
    params = list(probe.parameters()) + list(local.parameters())
    opt = OPTIMIZERS[settings.optimizer](
        params,
        lr=settings.lr,
        betas=tuple(settings.betas),
        weight_decay=settings.weight_decay if settings.optimizer == "adamw" else 0.0,
    )
    total = probe_steps(settings, len(train.idx))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
    )
    gen = torch.Generator().manual_seed(settings.seed)
    curve: list[list[float]] = []
    best: tuple[float, dict, dict] | None = None
    order: list[int] = []
    for step in range(1, total + 1):
        if not order:
            order = torch.randperm(len(train.idx), generator=gen).tolist()
        b = order.pop()
        x, y, end, mask = _gather(x_all, labels_t, ends_t, train.idx[b], train.mask[b])
        loss = _loss(probe(x, mask), y) + local.loss(x, mask, y, end)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if advance:
            advance(1)
        if val.idx and (step % settings.eval_every == 0 or step == total):
            held = _held_out_loss(probe, local, x_all, labels_t, ends_t, val)
            curve.append([step, round(held, 5)])
            if best is None or held < best[0]:
                best = (held, _copy(probe), _copy(local))
            elif settings.patience and _stale(curve, best[0], settings.patience):
                if advance:
                    advance(total - step)
                break
    if best is not None and settings.keep_best:
        probe.load_state_dict(best[1])
        local.load_state_dict(best[2])
    scores = _score(probe, local, x_all, labels_t, ends_t, test, data.offsets)
    scores.curve = curve or None
    return scores


def probe_steps(settings: ProbeSettings, n_batches: int) -> int:
    """Optimisation steps of one probe fit."""
    if settings.steps > 0:
        return settings.steps
    return max(settings.epochs, math.ceil(settings.min_steps / max(n_batches, 1))) * n_batches


def _copy(module: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _stale(curve: list[list[float]], best: float, patience: int) -> bool:
    return len(curve) > patience and min(c[1] for c in curve[-patience:]) > best


@torch.no_grad()
def _held_out_loss(
    probe: MultiHeadProbe,
    local: LocalProbes,
    x_all: Tensor,
    labels: Tensor,
    ends: Tensor,
    batches: _Batches,
) -> float:
    total = 0.0
    for idx, mask in zip(batches.idx, batches.mask):
        x, y, end, mask = _gather(x_all, labels, ends, idx, mask)
        total += float(_loss(probe(x, mask), y) + local.loss(x, mask, y, end))
    return total / max(len(batches.idx), 1)


class LocalProbes(nn.Module):
    """The NT-end local probes of some targets: diagonal f(E_i), and tridiagonal, the paper's
    multi-head probe with k restricted to |k − i| ≤ 1 (prefix scope: k ∈ {i − 1, i})."""

    def __init__(
        self,
        dim: int,
        classes: list[int],
        rows: Sequence[int],
        causal: bool,
        heads: int = 1,
        pos_dim: int = 16,
        max_len: int = 1,
    ) -> None:
        super().__init__()
        self.classes, self.rows, self.causal = classes, list(rows), causal
        self.diagonal = nn.Linear(dim, max(sum(classes), 1))
        self.tridiagonal = MultiHeadProbe(dim, classes, heads, pos_dim, max_len, causal, band=1)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        return _split(self.diagonal(x), self.classes), self.tridiagonal(x, mask)

    def loss(self, x: Tensor, mask: Tensor, y: Tensor, end: Tensor) -> Tensor:
        if not self.rows:
            return x.new_zeros(())
        diag, tri = self(x, mask)
        at_end = _only_ends(y, end, self.rows)
        return _loss(diag, at_end) + _loss(tri, at_end)


def _standardise(x: Tensor, n_train_tokens: int) -> Tensor:
    """Zero mean, unit variance per feature on the training tokens (affine: still linear)."""
    ref = x[:n_train_tokens]
    return (x - ref.mean(0)) / (ref.std(0) + 1e-6)


def _gather(
    x_all: Tensor, labels: Tensor, ends: Tensor, idx: Tensor, mask: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    safe, mask = idx.clamp(min=0).to(x_all.device), mask.to(x_all.device)
    y = labels[:, safe].masked_fill(~mask, -1)  # (G, B, T)
    return x_all[safe], y, ends[:, safe] & mask, mask


def _only_ends(y: Tensor, end: Tensor, rows: Sequence[int]) -> Tensor:
    if not rows:
        return y[:0]
    rows_t = torch.tensor(list(rows), device=y.device)
    return y[rows_t].masked_fill(~end[rows_t], -1)


def _split(logits: Tensor, classes: Sequence[int]) -> list[Tensor]:
    return list(logits[..., : sum(classes)].split(list(classes), dim=-1)) if classes else []


def _loss(outs: list[Tensor], y: Tensor) -> Tensor:
    total = y.new_zeros((), dtype=torch.float32)
    for out, yg in zip(outs, y):
        keep = yg >= 0
        if keep.any():
            total = total + F.cross_entropy(out[keep], yg[keep])
    return total


@torch.no_grad()
def _score(
    probe: MultiHeadProbe,
    local: LocalProbes,
    x_all: Tensor,
    labels: Tensor,
    ends: Tensor,
    test: _Batches,
    offsets: np.ndarray,
) -> ProbeScores:
    """Accuracy per target, pooled over the held-out positions, with per-string 95% intervals."""
    G = len(probe.classes)
    n = len(offsets) - 1
    hits = np.zeros((4, G, n))  # rows: all, at_end, diagonal, tridiagonal
    counts = np.zeros((4, G, n))

    def add(row: int, g: int, right: Tensor, where: Tensor, string: np.ndarray) -> None:
        w = where.cpu().numpy().reshape(-1)
        s = string.reshape(-1)[w]
        hits[row, g] += np.bincount(s, weights=right.cpu().numpy().reshape(-1)[w], minlength=n)
        counts[row, g] += np.bincount(s, minlength=n)

    for idx, mask in zip(test.idx, test.mask):
        x, y, end, mask = _gather(x_all, labels, ends, idx, mask)
        string = np.searchsorted(offsets, idx.clamp(min=0).numpy(), "right") - 1
        for g, out in enumerate(probe(x, mask)):
            right = out.argmax(-1) == y[g]
            add(0, g, right, y[g] >= 0, string)
            add(1, g, right, (y[g] >= 0) & end[g], string)
        if local.rows:
            diag, tri = local(x, mask)
            for j, g in enumerate(local.rows):
                where = (y[g] >= 0) & end[g]
                add(2, g, diag[j].argmax(-1) == y[g], where, string)
                add(3, g, tri[j].argmax(-1) == y[g], where, string)
    acc = np.full((4, G), np.nan)
    ci = np.full((4, G), np.nan)
    for row in range(4):
        for g in range(G):
            acc[row, g], ci[row, g] = ratio_ci(hits[row, g], counts[row, g])
    return ProbeScores(acc[0], acc[1], acc[2], acc[3], ci[0], ci[1])
