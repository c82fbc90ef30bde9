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

Decoding with a cache keeps, per Canon layer, the inputs of the last K-1 tokens
(`CanonTail`), and the model keeps their BOS flags; zeros stand for positions before 0, which is
the convolution's left padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from cfglab.models.config import ModelConfig
from cfglab.models.hooks import HookPoint


@dataclass
class CanonTail:
    """One Canon layer's inputs of the last K-1 decoded tokens: (B, K-1, width)."""

    inputs: Tensor


class Canon(nn.Module):
    """A residual causal depthwise convolution over the sequence; `hook` passes its output on."""

    def __init__(self, width: int, kernel: int, residual: bool) -> None:
        super().__init__()
        self.kernel, self.residual = kernel, residual
        # depthwise: one K-tap filter per channel; PyTorch's default (kaiming-uniform) init
        self.conv = nn.Conv1d(width, width, kernel, groups=width, bias=False)
        self.hook = HookPoint()

    def forward(
        self, x: Tensor, resets: Tensor | None = None, tail: CanonTail | None = None
    ) -> Tensor:
        """x (B, T, W) -> (B, T, W). `resets` (B, P + T) bool: BOS flags of the tail's tokens
        (P = K-1 of them, when `tail` is given) and of x's; None: no restarts. `tail` holds the
        previous inputs and is updated to end with x's."""
        P = self.kernel - 1
        if tail is None:
            ext = F.pad(x, (0, 0, P, 0))  # zeros before position 0: nothing precedes BOS
            flags = None if resets is None else F.pad(resets, (P, 0))
        else:
            ext = torch.cat((tail.inputs.to(x.dtype), x), dim=1)
            tail.inputs = ext[:, ext.size(1) - P :].detach()
            flags = resets
        return self.hook(self.taps(ext, flags, x.size(1)))

    def taps(self, ext: Tensor, flags: Tensor | None, T: int) -> Tensor:
        """Σ_j w_j ⊙ ext[t - j], tap j kept while no BOS lies in (t-j, t]: the unrolled
        convolution (K shifted multiply-adds), so a restart is one mask per tap."""
        P = self.kernel - 1
        w = self.conv.weight[:, 0].to(ext.dtype)  # (W, K); tap j is w[:, K-1-j]
        x = ext[:, P:]
        out = x * (w[:, P] + 1) if self.residual else x * w[:, P]
        keep = None
        for j in range(1, self.kernel):
            term = ext[:, P - j : P - j + T]
            if flags is not None:  # the token at t-j+1 must not be a BOS, nor any after it
                ok = ~flags[:, P - j + 1 : P - j + 1 + T]
                keep = ok if keep is None else keep & ok
                term = term * keep[..., None].to(term.dtype)
            out = out + term * w[:, P - j]
        return out

    def new_tail(self, batch: int, device: torch.device, dtype: torch.dtype) -> CanonTail:
        width = self.conv.weight.size(0)
        return CanonTail(torch.zeros(batch, self.kernel - 1, width, device=device, dtype=dtype))


def canon_layer(cfg: ModelConfig, place: str, width: int) -> Canon | None:
    """The Canon layer at `place` when the config asks for one there, else None."""
    return Canon(width, cfg.canon_kernel, cfg.canon_residual) if place in cfg.canon else None
