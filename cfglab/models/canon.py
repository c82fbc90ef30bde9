"""Canon layers (Allen-Zhu, Physics of LMs Part 4.1): residual causal depthwise convolutions.

A Canon layer mixes each channel of a hidden state with the same channel of the few tokens
before it: out_t = h_t + Σ_{j<K} w_j ⊙ h_{t-j} (K = `canon_kernel`, 4 by default; no bias, no
activation; `canon_residual=False` drops the h_t term). The weights are an `nn.Conv1d` of
groups = width, so they start from PyTorch's default init, as in the authors' canon_helper.py.
Four places in a block (`ModelConfig.canon`, any subset of "ABCD"):

    A  after ln_1, before attention                 width C
    B  on the fused projections, before rotary      width 3C (q, k, v; rel: its content q, k, v)
                                                    or C (pos, uni: values only, no q or k)
    C  after ln_2, before the MLP                   width C
    D  in the MLP, on c_fc's output, before GELU    width mlp_ratio * C

D on cfglab's MLP: the authors' MLP is gated (SwiGLU) and their D convolves the concatenated gate
and up projections before the gating; cfglab's GPT-2 MLP has one up projection, c_fc, so D
convolves it before its activation, the same spot in the data flow (cfglab's choice).

**BOS restarts the convolution** (cfglab's choice; the authors' code can also reset at document
boundaries — whether Part 4.1's Lano runs did is not confirmed). Inside a packed window
`... EOS BOS x' ...` the taps of a token of x' never read the tokens before its BOS: out_t sums
h_{t-j} only while no BOS lies in (t-j, t]. Generation always starts at BOS with nothing
before it, so a string's hidden states are the same in a training window and in generation,
wherever in the window it starts. Attention still reads across the boundary, as before.

Training decays the Canon weights like every matrix (cfglab.train: tensors of dim >= 2); whether
the authors exempt them is not confirmed.

Decoding with a cache keeps, per Canon layer, the inputs of the last K-1 tokens
(`CanonTail`), and the model keeps their BOS flags; zeros stand for positions before 0, which is
the convolution's left padding.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from cfglab.models import canon_native
from cfglab.models.config import ModelConfig
from cfglab.models.hooks import HookPoint


@dataclass
class CanonTail:
    """One Canon layer's inputs of the last K-1 decoded tokens: (B, K-1, width)."""

    inputs: Tensor


class Restarts:
    """Where a BOS cuts the Canon taps, from the (B, T) BOS flags, shared by every Canon layer
    of one forward: tap j of out[b, t] reads x[b, t - j] only while no BOS lies in (t-j, t].

    Eager code reads the cut taps as triples (row b, position t, tap j), a handful per string
    (at most K(K-1)/2), found once; compiled code reads the dense (B, T, K) mask `keep`, which
    needs no data-dependent shapes and fuses into the convolution's loop."""

    def __init__(self, flags: Tensor, kernel: int) -> None:
        self.flags, self.kernel = flags, kernel

    @functools.cached_property
    def triples(self) -> tuple[Tensor, Tensor, Tensor]:
        """(rows, positions, taps), each (N,) long: for a BOS at s and t = s + d (d < K-1,
        before the row's next BOS), every tap j > d with t - j >= 0 (earlier ones read the
        zero padding anyway)."""
        flags, kernel = self.flags, self.kernel
        rows, starts = flags.nonzero(as_tuple=True)  # row-major: a row's BOS in order
        nxt = torch.full_like(starts, flags.size(1))
        if starts.numel() > 1:  # the next BOS of the same row bounds this string's positions
            same = rows[1:] == rows[:-1]
            nxt[:-1] = torch.where(same, starts[1:], nxt[:-1])
        pairs = [(d, j) for j in range(1, kernel) for d in range(j)]  # tap j cut at d < j
        d_, j_ = torch.tensor(pairs, dtype=torch.long, device=flags.device).view(-1, 2).unbind(1)
        t = starts[:, None] + d_[None, :]  # (n_bos, pairs)
        keep = (t < nxt[:, None]) & (t >= j_[None, :])
        return rows[:, None].expand_as(t)[keep], t[keep], j_.expand_as(t)[keep]

    def keep(self) -> Tensor:
        """(B, T, K) bool: whether tap j of position t is read."""
        K, T = self.kernel, self.flags.size(1)
        padded = F.pad(self.flags, (K - 1, 0))
        taps = [torch.ones_like(self.flags)]
        for j in range(1, K):  # tap j also needs no BOS at t - j + 1
            taps.append(taps[-1] & ~padded[:, K - j : K - j + T])
        return torch.stack(taps, dim=-1)


def restarts(flags: Tensor, kernel: int) -> Restarts:
    """The Canon restarts of a (B, T) BOS-flag matrix (see `Restarts`)."""
    return Restarts(flags, kernel)


class Canon(nn.Module):
    """A residual causal depthwise convolution over the sequence; `hook` passes its output on."""

    unit: Tensor

    def __init__(self, width: int, kernel: int, residual: bool) -> None:
        super().__init__()
        self.kernel, self.residual = kernel, residual
        # depthwise: one K-tap filter per channel; PyTorch's default (kaiming-uniform) init
        self.conv = nn.Conv1d(width, width, kernel, groups=width, bias=False)
        # the residual's h_t as tap 0 (not saved: a checkpoint holds only the conv's weights)
        self.register_buffer("unit", F.one_hot(torch.tensor(0), kernel).float(), persistent=False)
        self.hook = HookPoint()

    def forward(
        self, x: Tensor, cuts: Restarts | None = None, tail: CanonTail | None = None
    ) -> Tensor:
        """x (B, T, W) -> (B, T, W). `cuts`: the taps BOS restarts cut (`restarts`), in x's
        positions, or in those of the tail's K-1 tokens followed by x's when `tail` is given;
        None: no restarts. `tail` holds the previous inputs and is updated to end with x's."""
        taps = self.taps()  # fp32 (the weights' dtype): every path multiplies in fp32 or wider
        P = self.kernel - 1
        ext = x
        if tail is not None:
            ext = torch.cat((tail.inputs.to(x.dtype), x), dim=1)
            tail.inputs = ext[:, ext.size(1) - P :].detach()
        if torch.compiler.is_compiling():  # plain ops: inductor fuses the taps into one loop
            out = masked_taps(ext, taps, None if cuts is None else cuts.keep())
        else:
            out = CausalDepthwise.apply(ext, taps, cuts)
        return self.hook(out if tail is None else out[:, P:])

    def taps(self) -> Tensor:
        """(W, K): column j multiplies h_{t-j}; the residual adds 1 to tap 0. nn.Conv1d is a
        cross-correlation over a left-padded input, so its kernel runs the other way."""
        w = self.conv.weight[:, 0].flip(-1)
        return w + self.unit if self.residual else w

    def new_tail(self, batch: int, device: torch.device, dtype: torch.dtype) -> CanonTail:
        width = self.conv.weight.size(0)
        return CanonTail(torch.zeros(batch, self.kernel - 1, width, device=device, dtype=dtype))


class CausalDepthwise(torch.autograd.Function):
    """out[b, t] = Σ_j w[:, j] ⊙ x[b, t - j] (zeros before 0), minus the cut taps; a
    hand-written backward (performance only, checked against conv1d in tests/test_canon.py).

    On CPU in fp32 or bf16 it runs the fused loop of canon_native (canon_kernel.cpp) where a C++
    compiler could build it; otherwise, and for other dtypes and devices, the torch code below.

    Autograd over K shifted multiply-adds keeps every shifted copy and adds a zero-filled
    gradient per slice; here each tap is one in-place multiply-add, both ways, over the window
    flattened to (B, T·W) rows (tap j is a shift by j·W, its weights tiled along the row), in
    fp32 whatever the input (bf16 element-wise kernels are several times slower on the CPU),
    and the cut taps are a few gathered rows (benchmarks/RESULTS.md, "Canon layers")."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, cuts: Restarts | None) -> Tensor:
        ctx.cuts = cuts
        ctx.save_for_backward(x, w)
        ctx.native = canon_native.supports(x)
        if ctx.native:  # the fused loop: ~14x faster at the demo's widths
            return canon_native.forward(x, w, None if cuts is None else cuts.flags)
        xf, tiled = _flat(x), _tiled(w, x.size(1))
        out = _shifted_sum(xf, tiled, x.size(-1), forward=True)
        out = out.view(x.shape)
        if cuts is not None and cuts.triples[0].numel():
            b, t, j = cuts.triples
            xs = xf.view(x.shape)[b, t - j]  # (N, W)
            out.index_put_((b, t), -(xs * w.to(xs.dtype)[:, j].T), accumulate=True)
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, Tensor, None]:
        x, w = ctx.saved_tensors
        cuts: Restarts | None = ctx.cuts
        if ctx.native:
            dx_, dw_ = canon_native.backward(g, x, w, None if cuts is None else cuts.flags)
            return dx_, dw_.to(w.dtype), None
        B, T, W = x.shape
        xf, gf, tiled = _flat(x), _flat(g), _tiled(w, T)
        dx = _shifted_sum(gf, tiled, W, forward=False).view(x.shape)
        dw = torch.zeros(w.size(1), W, dtype=xf.dtype, device=x.device)  # (K, W)
        for j in range(min(w.size(1), T)):
            dw[j] = (gf[:, j * W :] * xf[:, : (T - j) * W]).view(-1, W).sum(0)
        if cuts is not None and cuts.triples[0].numel():
            b, t, tap = cuts.triples
            gs, xs = gf.view(B, T, W)[b, t], xf.view(B, T, W)[b, t - tap]  # (N, W)
            dx.index_put_((b, t - tap), -(gs * w.to(gs.dtype)[:, tap].T), accumulate=True)
            dw.index_add_(0, tap, -(gs * xs))
        return dx.to(x.dtype), dw.T.to(w.dtype), None


def masked_taps(x: Tensor, w: Tensor, keep: Tensor | None) -> Tensor:
    """The convolution in plain ops, for torch.compile: Σ_j w[:, j] ⊙ x[t - j] ⊙ keep[t, j]
    over a left-padded fp32 (or wider) copy. (Eager, each term would be a pass over memory.)"""
    K, T = w.size(1), x.size(1)
    wide = torch.promote_types(x.dtype, torch.float32)
    xp, wf = F.pad(x, (0, 0, K - 1, 0)).to(wide), w.to(wide)
    out = xp[:, K - 1 :] * wf[:, 0]
    for j in range(1, K):
        term = xp[:, K - 1 - j : K - 1 - j + T] * wf[:, j]
        out = out + (term if keep is None else term * keep[..., j : j + 1])
    return out.to(x.dtype)


def _flat(x: Tensor) -> Tensor:
    """(B, T, W) -> (B, T·W) in fp32 (or wider), contiguous."""
    wide = torch.promote_types(x.dtype, torch.float32)
    return x.reshape(x.size(0), -1).to(wide).contiguous()


def _tiled(w: Tensor, T: int) -> Tensor:
    """(W, K) taps -> (K, T·W): tap j's weights repeated along a flattened row."""
    wide = torch.promote_types(w.dtype, torch.float32)
    return w.T.to(wide).repeat(1, T)


def _shifted_sum(x: Tensor, tiled: Tensor, W: int, forward: bool) -> Tensor:
    """Σ_j tap_j ⊙ shift_j(x) on flattened rows: shifted right by j·W (forward: x[t - j]) or
    left (backward: the transposed convolution, g[t + j])."""
    L = x.size(1)
    out = x * tiled[0]
    for j in range(1, tiled.size(0)):
        n = L - j * W
        if n <= 0:
            break
        if forward:
            out[:, j * W :].addcmul_(x[:, :n], tiled[j, :n])
        else:
            out[:, :n].addcmul_(x[:, j * W :], tiled[j, :n])
    return out


def canon_layer(cfg: ModelConfig, place: str, width: int) -> Canon | None:
    """The Canon layer at `place` when the config asks for one there, else None."""
    return Canon(width, cfg.canon_kernel, cfg.canon_residual) if place in cfg.canon else None
