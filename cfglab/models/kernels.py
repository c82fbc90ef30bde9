"""Attention kernels: performance only. Each computes exactly what a plain PyTorch expression
computes (the reference, checked in tests/test_models.py for values and gradients); each exists
because a measurement at the sizes users run showed the plain path slower (benchmarks/RESULTS.md).

skew_*       Music Transformer's skew: per-distance columns -> a Toeplitz matrix, by views
             (autograd's own backward: a hand-written one measured no faster, RESULTS.md)
causal_blocks  causal attention of a whole window in query blocks with a flash-style backward
             over the saved probabilities (bf16 on CPU; rel's blocked path)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

# autograd's ctx: a namespace on which each Function keeps its own fields between its passes
Ctx = Any

# Rows per query block of a causal training window (causal_blocks; rel's blocked path): 64
# measured best for rel on CPU (benchmarks/RESULTS.md, "rel in query blocks").
QUERY_BLOCK = 64


def skew_view(x: Tensor, drop: int, width: int, ncols: int) -> Tensor:
    """(..., R, L) -> (..., R, ncols): the rows laid flat, `drop` entries skipped, re-cut into rows
    of `width`, the first `ncols` columns kept (a view when x is contiguous)."""
    *lead, R, L = x.shape
    flat = x.reshape(*lead, R * L)
    return flat[..., drop : drop + R * width].view(*lead, R, width)[..., :ncols]


def skew_lower(x: Tensor) -> Tensor:
    """(..., T, T+1) -> (..., T, T) with out[i, j] = x[i, T - i + j] for j <= i (junk above).

    Music Transformer's skew: a table of per-distance columns, in reverse order, becomes the
    Toeplitz matrix of distances i - j without a gather.
    """
    T = x.size(-2)
    return skew_view(x, T, T, T)


def skew_lower_block(x: Tensor) -> Tensor:
    """(..., R, E+1) -> (..., R, E) with out[r, j] = x[r, R - r + j] for j <= E - R + r (junk
    above): skew_lower for the query rows E-R .. E-1 of a causal window, against keys 0 .. E-1."""
    R, E = x.size(-2), x.size(-1) - 1
    return skew_view(x, R, E, E)


def skew_upper(x: Tensor) -> Tensor:
    """(..., T, T+1) -> (..., T, T) with out[j, i] = x[j, i - j] for i >= j (junk below)."""
    T = x.size(-2)
    return skew_view(x, 0, T, T)


def skew_both(x: Tensor) -> Tensor:
    """(..., T, 2T) -> (..., T, T) with out[i, j] = x[i, T - i + j] for every i, j."""
    T = x.size(-2)
    return skew_view(x, T, 2 * T - 1, T)


class _CausalBlocks(torch.autograd.Function):
    """softmax(scale q k^T + bias) v over a whole causal window, query rows in blocks (rows
    i0 .. i1-1 against keys 0 .. i1-1), with a flash-style backward over the saved probabilities.
    `biases`, optional, are one (B|1, nh, rows, i1) additive term per block (rel's c2p + p2c);
    their gradient is the logits' gradient.

    Why: on CPU in bf16 SDPA's flash kernel runs no faster than in fp32, while these batched bf16
    matmuls run several times faster than fp32 ones (benchmarks/RESULTS.md); and for rel, whose
    scores SDPA cannot take with a gradient, this backward is leaner than autograd's through the
    same ops. Softmax accumulates in fp32, as SDPA does; the logits are the matmul's output, as
    under autocast. Every matmul reads its operands without a copy: k and v are transposed once,
    and the key-side gradients are accumulated transposed."""

    @staticmethod
    def forward(
        ctx: Ctx, q: Tensor, k: Tensor, v: Tensor, block: int, scale: float, *biases: Tensor
    ) -> Tensor:
        T = q.size(2)
        q = q * scale  # scale the (T, hs) factor, not the (T, T) logits
        kt = k.transpose(-2, -1).contiguous()  # (B, nh, hs, T)
        future = torch.ones(block, block, dtype=torch.bool, device=q.device).triu_(1)
        probs, outs = [], []
        for b, i0 in enumerate(range(0, T, block)):
            i1 = min(T, i0 + block)
            logits = q[:, :, i0:i1] @ kt[..., :i1]
            if biases:
                logits += biases[b]
            logits[..., i0:].masked_fill_(future[: i1 - i0, : i1 - i0], float("-inf"))
            # fp32 inside for bf16 too; CUDA's autocast returns fp32 here: back to v's dtype
            p = torch.softmax(logits, dim=-1).to(v.dtype)
            outs.append(p @ v[:, :, :i1])
            probs.append(p)
        y = torch.cat(outs, dim=2)
        ctx.save_for_backward(q, k, v, y, *probs)
        ctx.block, ctx.scale = block, scale
        ctx.bias_dtypes = [t.dtype for t in biases]
        return y

    @staticmethod
    def backward(ctx: Ctx, gy: Tensor) -> tuple[Tensor | None, ...]:
        q, k, v, y, *probs = ctx.saved_tensors
        block = ctx.block
        acc = torch.promote_types(q.dtype, torch.float32)  # bf16 sums and rows in fp32
        # sum_j p_ij dp_ij = gy_i . y_i: the softmax backward's row term, once for all blocks
        row = (gy.to(acc) * y.to(acc)).sum(-1, keepdim=True)
        vt = v.transpose(-2, -1)
        gkt = torch.zeros(vt.shape, dtype=acc, device=k.device)  # transposed
        gvt = torch.zeros(vt.shape, dtype=acc, device=v.device)
        # dp - row in one matmul, [gy, -row_hi, -row_lo] @ [v^T; 1; 1]: the difference forms in
        # the matmul's fp32 accumulator, row split in two bf16 parts keeps ~16 bits of it, and
        # no mixed-dtype op (a hidden copy on CPU) is needed
        hi = row.to(gy.dtype)
        gy1 = torch.cat((gy, -hi, (hi.to(acc) - row).to(gy.dtype)), dim=-1)  # (B, nh, T, hs+2)
        vt1 = torch.cat((vt, vt.new_ones(*vt.shape[:-2], 2, vt.size(-1))), dim=-2)  # (.., hs+2, T)
        gq = torch.empty_like(q)
        gbiases = []
        for b, p in enumerate(probs):
            i0, i1 = b * block, b * block + p.size(-2)
            g = gy[:, :, i0:i1]
            gvt[..., :i1] += g.transpose(-2, -1) @ p
            gl = (gy1[:, :, i0:i1] @ vt1[..., :i1]).mul_(p)  # dL/dlogits
            gq[:, :, i0:i1] = gl @ k[:, :, :i1]
            gkt[..., :i1] += q[:, :, i0:i1].transpose(-2, -1) @ gl
            if ctx.bias_dtypes:
                gbiases.append(gl.to(ctx.bias_dtypes[b]))  # no copy when the dtypes agree
        gk, gv = gkt.transpose(-2, -1), gvt.transpose(-2, -1)
        return gq * ctx.scale, gk.to(k.dtype), gv.to(v.dtype), None, None, *gbiases


def causal_blocks(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    block: int = QUERY_BLOCK,
    scale: float | None = None,
    biases: list[Tensor] | tuple[Tensor, ...] = (),
) -> Tensor:
    """Causal attention of a whole window (q, k, v each (B, nh, T, hs)) in query blocks;
    `scale` defaults to 1/sqrt(hs); `biases`, if given, one additive term per block."""
    scale = q.size(-1) ** -0.5 if scale is None else scale
    return _CausalBlocks.apply(q, k, v, block, scale, *biases)
