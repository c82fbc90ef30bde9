"""rel and pos through FlexAttention (`torch.nn.attention.flex_attention`): performance only.

Each computes what the explicit path computes (`RelativeAttention.weights`,
`PositionAttention.distance_logits`; checked in tests/test_flex.py): the position terms enter as
a `score_mod` added to the scaled q.k score, the causal mask as a `block_mask`, so the fused
kernel never writes the (T, T) probabilities and skips the masked half block by block.

- rel: c2p[i, j] = q_i.kr[δ(i, j)] and p2c[i, j] = k_j.qr[δ(j, i)] are read from per-distance
  tables, (B, nh, T, D) each with D the distances a window holds (T causal, 2T - 1
  bidirectional): c2p_table[i, o + i - j] and p2c_table[j, o + i - j], o the offset of distance
  0. Both tables are matmuls of the (T, hs) factors against the relative rows those distances
  read; the score_mod gathers from them, and their gradients come from the kernel's backward.
- pos: no queries or keys; a zero q.k score plus the learned logit of (head, distance).

Used on CUDA for whole windows without attention dropout (FlexAttention has none). On CPU
FlexAttention has no backward (torch 2.13) and its eager forward materialises the scores, so
training there keeps the blocked path; tests run its forward on CPU.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import cast

import torch
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

ScoreMod = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]


def available(t: Tensor) -> bool:
    """Where FlexAttention trains: CUDA (a fused Triton kernel with its own backward)."""
    return t.device.type == "cuda"


@functools.cache
def _compiled() -> Callable[..., object]:
    return cast("Callable[..., object]", torch.compile(flex_attention, dynamic=False))


def _attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    score_mod: ScoreMod,
    block_mask: BlockMask | None,
    scale: float | None = None,
) -> Tensor:
    """Compiled on CUDA (the fused kernel); eager elsewhere (a dense reference, forward only)."""
    eager = cast("Callable[..., object]", flex_attention)
    attend = _compiled() if q.device.type == "cuda" else eager
    out = attend(q, k, v, score_mod=score_mod, block_mask=block_mask, scale=scale)
    assert isinstance(out, Tensor)  # not the (out, lse) pair: no return_lse asked for
    return out


def _causal(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
    return q_idx >= kv_idx


@functools.lru_cache(maxsize=32)
def causal_mask(n: int, device: torch.device) -> BlockMask:
    """The causal block mask of an n-token window, shared by every batch row and head."""
    return create_block_mask(_causal, None, None, n, n, device=device)


def relative_tables(
    q: Tensor, k: Tensor, qr: Tensor, kr: Tensor, max_rel: int, causal: bool
) -> tuple[Tensor, Tensor, int]:
    """Per-distance tables of a whole window (q, k: (B, nh, T, hs); qr, kr: (nh, 2 max_rel, hs),
    already scaled as the logits want): c2p_table[.., i, o + d] = q_i.kr[δ(d)] and
    p2c_table[.., j, o + d] = k_j.qr[δ(-d)] for distance d = i - j, and the offset o."""
    T = q.size(2)
    offset = 0 if causal else T - 1
    dist = torch.arange(-offset, T, device=q.device)  # every i - j the window holds
    kr_rows = kr[:, dist.clamp(-max_rel, max_rel - 1) + max_rel]  # (nh, D, hs): kr[δ(d)]
    qr_rows = qr[:, (-dist).clamp(-max_rel, max_rel - 1) + max_rel]  # qr[δ(-d)]
    return q @ kr_rows.transpose(-2, -1), k @ qr_rows.transpose(-2, -1), offset


def relative_score_mod(c2p: Tensor, p2c: Tensor, offset: int, causal: bool) -> ScoreMod:
    """score + c2p[i, j] + p2c[i, j], read from the tables of `relative_tables`."""

    def score_mod(score: Tensor, b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        d = q_idx - kv_idx + offset
        if causal:  # masked entries (future keys) still pass through here: keep them in range
            d = d.clamp(min=0)
        return score + c2p[b, h, q_idx, d] + p2c[b, h, kv_idx, d]

    return score_mod


def relative_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    qr: Tensor,
    kr: Tensor,
    scale: float,
    max_rel: int,
    causal: bool,
) -> Tensor:
    """rel's attention output (B, nh, T, hs) of a whole window: softmax(A) v, A as documented in
    attention.py, every term scaled by `scale`."""
    c2p, p2c, offset = relative_tables(q * scale, k, qr * scale, kr, max_rel, causal)
    mask = causal_mask(q.size(2), q.device) if causal else None
    score_mod = relative_score_mod(c2p, p2c, offset, causal)
    return _attend(q, k, v, score_mod, mask, scale)


def distance_score_mod(weight: Tensor) -> ScoreMod:
    """score + weight[h, i - j], distances past the table sharing its last value (pos)."""
    last = weight.size(1) - 1

    def score_mod(score: Tensor, b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return score + weight[h, (q_idx - kv_idx).clamp(0, last)]

    return score_mod


# FlexAttention's kernels want a query/key width of at least 16.
_ZERO_WIDTH = 16


def distance_attention(v: Tensor, weight: Tensor) -> Tensor:
    """pos's causal attention output (B, nh, T, hs) of a whole window: softmax over keys j <= i
    of weight[h, i - j], times v. The q.k score is zero (zero queries and keys, never written)."""
    B, H, T, _ = v.shape
    zeros = v.new_zeros(1, 1, 1, _ZERO_WIDTH).expand(B, H, T, _ZERO_WIDTH)
    mask = causal_mask(T, v.device)
    return _attend(zeros, zeros, v, distance_score_mod(weight), mask)
