"""Self-attention variants, chosen by position encoding from the `ATTENTIONS` registry.

Every variant maps (B, T, C) -> (B, T, C) with the same call, `attn(x, start, cache)`:
`start` is the absolute position of x[:, 0] (non-zero only when decoding with a cache) and
`cache` a `LayerCache` the new keys/values are written into. `probs(x)` returns the attention
probabilities through the explicit path, for analysis.

- abs, rot (and mlm-abs): softmax(q k^T / sqrt(hs)) v through F.scaled_dot_product_attention;
  rot rotates q and k by their absolute positions first (so q.k depends on i - j only).
  Exception: whole causal windows in bf16 on CPU run `causal_blocks` (query blocks, hand-written
  backward), faster there than SDPA's CPU flash kernel (benchmarks/RESULTS.md, "Models").
- rel: DeBERTa's disentangled attention (He et al. 2021, eq. 4), explicit path:
  A_ij = q_i.k_j + q_i.kr[δ(i,j)] + k_j.qr[δ(j,i)], scaled by 1/sqrt(3 hs), with
  δ(i,j) = clip(i - j, -k, k - 1) + k and (qr, kr) this layer's projections of a relative
  embedding table of 2k rows shared by all layers (k = max_rel). Whole windows (training)
  get c2p/p2c from matmuls against per-distance tables and a skew; cached decoding gathers.
  Causal windows longer than `query_block` (64) run in blocks of query rows, each against its
  key prefix only, which skips most of the masked half (cost: benchmarks/RESULTS.md, "Models"):
  `causal_blocks` with c2p + p2c as each block's additive bias (without dropout). On CUDA,
  whole windows without dropout go through FlexAttention instead (models/flex.py).
- pos: logits are a learned number per (head, distance i - j) — no queries or keys; distances
  beyond the context share the last learned value. Training windows build the (nh, T, T)
  Toeplitz logits by a skew (no scatter-add in the backward, which is slow on GPUs); on CUDA,
  whole windows without dropout go through FlexAttention (models/flex.py).
- uni: head h = 1..H averages the window of width w_h = 2^h - 1 that ends at, and includes,
  the token itself: positions j with i - w_h < j <= i. Near the start the window is cut at
  position 0 and the average is over the i + 1 tokens there. Heads with w_h >= T therefore average
  the whole prefix (e.g. with 16 heads and context 512, heads 10..16 all do). No queries or keys.
- none (NoPE): abs's attention with no position embedding: only the causal mask orders tokens.
Canon-B (models/canon.py), when the config asks for it, convolves the fused projections first.
pos and uni share one explicit path: a batch-independent (nh, Tq, S) probability matrix times v.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import overload

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from cfglab.models import flex
from cfglab.models.canon import Canon, CanonTail, Restarts, canon_layer
from cfglab.models.config import PE, ModelConfig
from cfglab.models.hooks import HookPoint
from cfglab.models.kernels import (
    QUERY_BLOCK,
    causal_blocks,
    skew_both,
    skew_lower,
    skew_lower_block,
    skew_upper,
)


@dataclass
class LayerCache:
    """One layer's keys and values for the tokens decoded so far, preallocated to `capacity`."""

    k: Tensor | None  # (B, nh, capacity, hs); None for variants without keys (pos, uni)
    v: Tensor  # (B, nh, capacity, hs)
    canon: dict[str, CanonTail] = field(default_factory=dict)  # place -> its last inputs


def distances(n_query: int, n_key: int, start: int, device: torch.device) -> Tensor:
    """(Tq, S) matrix of i - j: query i sits at absolute position start + i, key j at j."""
    qpos = torch.arange(start, start + n_query, device=device)
    return qpos[:, None] - torch.arange(n_key, device=device)[None, :]


def masked_softmax(logits: Tensor, d: Tensor | None) -> Tensor:
    """Softmax over keys, with keys in the future (d < 0) removed when d is given."""
    if d is not None:
        logits = logits.masked_fill(d < 0, float("-inf"))
    return F.softmax(logits.float(), dim=-1).to(logits.dtype)


def causal_bias(d: Tensor, dtype: torch.dtype) -> Tensor:
    """0 where the key is not in the future (d = i - j >= 0), -inf where it is."""
    return torch.zeros(d.shape, dtype=dtype, device=d.device).masked_fill_(d < 0, float("-inf"))


class Attention(nn.Module):
    """Shared parts: head bookkeeping, the output projection, the cache, the explicit path."""

    has_keys = True  # whether the cache stores keys

    def __init__(self, cfg: ModelConfig, causal: bool) -> None:
        super().__init__()
        self.n_head, self.head_size, self.causal = cfg.n_head, cfg.head_size, causal
        self.dropout = cfg.dropout
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.hook_pattern = HookPoint()  # probabilities (B, nh, Tq, S); see models/hooks.py
        self.explicit = False  # always take the explicit path (set by explicit_attention)
        self.canon_b: Canon | None = None  # Canon-B on the projections (models/canon.py)

    def canon(self, t: Tensor, cache: LayerCache | None, cuts: Restarts | None) -> Tensor:
        """Canon-B on the fused projections (B, T, width), before any rotation; or t as is."""
        if self.canon_b is None:
            return t
        return self.canon_b(t, cuts, cache.canon["B"] if cache is not None else None)

    def wants_pattern(self) -> bool:
        """Whether the probabilities must exist: a hook reads or patches them."""
        return self.explicit or self.hook_pattern.hooked()

    def probs(self, x: Tensor) -> Tensor:  # (B, nh, T, T)
        """Attention probabilities through the explicit path (every variant defines it)."""
        raise NotImplementedError

    def heads(self, t: Tensor) -> Tensor:  # (B, T, C) -> (B, nh, T, hs)
        B, T, _ = t.shape
        return t.view(B, T, self.n_head, self.head_size).transpose(1, 2)

    def merge(self, y: Tensor) -> Tensor:  # (B, nh, T, hs) -> (B, T, C), projected
        B, _, T, _ = y.shape
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.head_size)
        return self.resid_dropout(self.c_proj(y))

    @overload
    def store(
        self, k: Tensor, v: Tensor, start: int, cache: LayerCache | None
    ) -> tuple[Tensor, Tensor]: ...

    @overload
    def store(
        self, k: None, v: Tensor, start: int, cache: LayerCache | None
    ) -> tuple[None, Tensor]: ...

    def store(
        self, k: Tensor | None, v: Tensor, start: int, cache: LayerCache | None
    ) -> tuple[Tensor | None, Tensor]:
        """Write the new keys/values at [start, start + T) and return all of them so far."""
        if cache is None:
            return k, v
        end = start + v.size(2)
        cache.v[:, :, start:end] = v
        if cache.k is not None and k is not None:
            cache.k[:, :, start:end] = k
            k = cache.k[:, :, :end]
        return k, cache.v[:, :, :end]

    def new_cache(
        self, batch: int, capacity: int, device: torch.device, dtype: torch.dtype
    ) -> LayerCache:
        shape = (batch, self.n_head, capacity, self.head_size)
        k = torch.zeros(shape, device=device, dtype=dtype) if self.has_keys else None
        return LayerCache(k=k, v=torch.zeros(shape, device=device, dtype=dtype))

    def mix(self, p: Tensor, v: Tensor) -> Tensor:
        """The explicit path's last step: dropout on probabilities, then p @ v."""
        if self.training and self.dropout > 0:
            p = F.dropout(p, self.dropout)
        return p @ v  # (B|1, nh, Tq, S) @ (B, nh, S, hs) -> (B, nh, Tq, hs)


class DotProductAttention(Attention):
    """abs / mlm-abs: plain softmax(q k^T / sqrt(hs)) v through SDPA."""

    def __init__(self, cfg: ModelConfig, causal: bool, rel_emb: nn.Embedding | None = None) -> None:
        super().__init__(cfg, causal)
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)  # fused q, k, v
        self.canon_b = canon_layer(cfg, "B", 3 * cfg.n_embd)
        self.query_block = QUERY_BLOCK

    def qkv(
        self,
        x: Tensor,
        start: int,
        cache: LayerCache | None = None,
        cuts: Restarts | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = self.canon(self.c_attn(x), cache, cuts).chunk(3, dim=2)
        return self.heads(q), self.heads(k), self.heads(v)  # (B, nh, T, hs) each

    def forward(
        self,
        x: Tensor,
        start: int = 0,
        cache: LayerCache | None = None,
        cuts: Restarts | None = None,
    ) -> Tensor:
        q, k, v = self.qkv(x, start, cache, cuts)
        k, v = self.store(k, v, start, cache)
        Tq, S = q.size(2), k.size(2)
        if self.wants_pattern():
            return self.merge(self.mix(self.hook_pattern(self.pattern(q, k, start)), v))
        if self.use_blocks(q, S):
            return self.merge(causal_blocks(q, k, v, self.query_block))
        # SDPA's is_causal aligns the mask top-left, right only when queries and keys coincide.
        mask = None
        if self.causal and Tq > 1 and Tq != S:
            mask = distances(Tq, S, start, x.device) >= 0
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=self.causal and Tq > 1 and Tq == S,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.merge(y)

    def use_blocks(self, q: Tensor, S: int) -> bool:
        """A whole causal window in bf16 on CPU, without dropout: `causal_blocks` runs faster than
        SDPA there; in fp32 on CPU the two are close and SDPA stays (benchmarks/RESULTS.md)."""
        return (
            self.causal
            and q.size(2) == S > 1
            and q.device.type == "cpu"
            and q.dtype == torch.bfloat16
            and not (self.training and self.dropout > 0)
        )

    def probs(self, x: Tensor) -> Tensor:  # (B, nh, T, T)
        q, k, _ = self.qkv(x, 0)
        return self.pattern(q, k, 0)

    def pattern(self, q: Tensor, k: Tensor, start: int) -> Tensor:
        """The explicit path's probabilities (B, nh, Tq, S): softmax(q k^T / sqrt(hs)), causal."""
        logits = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_size)
        d = distances(q.size(2), k.size(2), start, q.device) if self.causal else None
        return masked_softmax(logits, d)


class Rotary(nn.Module):
    """Rotary position embedding (Su et al. 2021): feature pairs (2m, 2m+1) of a head at position
    t turn by t * base^(-2m/hs). One complex multiply; norm-preserving, and q.k then depends on
    the positions' difference only."""

    inv_freq: Tensor  # buffers, declared for the type checker
    turns: Tensor

    def __init__(self, head_size: int, base: float, context: int) -> None:
        super().__init__()
        self.head_size = head_size  # the features that turn: a head's first head_size
        inv_freq = base ** (-torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # (hs/2,)
        # cos and sin as a real (context, hs/2, 2) buffer: Module.to(dtype) would drop the
        # imaginary part of a complex one
        turns = torch.view_as_real(self.compute(0, context))
        self.register_buffer("turns", turns, persistent=False)

    def compute(self, start: int, n: int) -> Tensor:
        """Unit complex numbers e^{i t θ_m} for t in [start, start + n): (n, hs/2) complex64."""
        pos = torch.arange(start, start + n, device=self.inv_freq.device, dtype=torch.float32)
        theta = pos[:, None] * self.inv_freq.float()[None, :]
        return torch.polar(torch.ones_like(theta), theta)

    def angles(self, start: int, n: int) -> Tensor:
        """The cached turns inside the context, computed afresh past it."""
        if start + n <= self.turns.size(0):
            return torch.view_as_complex(self.turns[start : start + n].float())
        return self.compute(start, n)

    def forward(self, x: Tensor, start: int) -> Tensor:  # (B, T, n, hs), same shape out
        B, T, n, hs = x.shape
        r = self.head_size
        if r < hs:  # partial RoPE: the first r features turn, the others pass as they are
            return torch.cat((self.forward(x[..., :r], start), x[..., r:]), dim=-1)
        z = torch.view_as_complex(x.float().reshape(B, T, n, hs // 2, 2))  # (B, T, n, hs/2)
        z = z * self.angles(start, T)[:, None, :]
        return torch.view_as_real(z).view(B, T, n, hs).to(x.dtype)


class RotaryAttention(DotProductAttention):
    """rot: q and k rotated by their absolute positions, then SDPA; the cache keeps rotated keys.

    Partial RoPE (`rope_dim` r < hs): the first r features of each head's q and k turn, with the
    frequencies base^(-2m/r), m < r/2 (as GPT-NeoX's rotary_pct); the other hs - r features
    carry no position (NoPE inside the head). Which features Part 4.1's partial RoPE turns, and
    its frequencies, are not confirmed; this is GPT-NeoX's convention."""

    def __init__(self, cfg: ModelConfig, causal: bool, rel_emb: nn.Embedding | None = None) -> None:
        super().__init__(cfg, causal)
        self.rotary = Rotary(cfg.rotary_dim, cfg.rope_base, cfg.context)

    def qkv(
        self,
        x: Tensor,
        start: int,
        cache: LayerCache | None = None,
        cuts: Restarts | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        B, T, C = x.shape
        qkv = self.canon(self.c_attn(x), cache, cuts)  # Canon-B before the rotation
        qk, v = qkv.split([2 * C, C], dim=2)  # one split: one cheap backward
        qk = self.rotary(qk.view(B, T, 2 * self.n_head, self.head_size), start)
        q, k = qk.transpose(1, 2).chunk(2, dim=1)  # (B, nh, T, hs) each: q and k in one rotation
        return q, k, self.heads(v)


class RelativeAttention(Attention):
    """rel: DeBERTa disentangled attention over a relative embedding table shared by all layers."""

    def __init__(self, cfg: ModelConfig, causal: bool, rel_emb: nn.Embedding | None = None) -> None:
        super().__init__(cfg, causal)
        assert rel_emb is not None, "rel attention needs the shared relative embedding table"
        self.rel_emb = (
            rel_emb  # (2k, C), owned by the model; registered here too (like tied weights)
        )
        self.max_rel = cfg.rel_span
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)  # content q, k, v
        self.canon_b = canon_layer(cfg, "B", 3 * cfg.n_embd)
        self.c_pos = nn.Linear(cfg.n_embd, 2 * cfg.n_embd, bias=cfg.bias)  # position q, k
        self.scale = 1.0 / math.sqrt(3 * cfg.head_size)
        # Causal training windows longer than this run in blocks of query rows, each against
        # the keys up to its last row only: the masked half of the (T, T) scores is mostly skipped.
        self.query_block = QUERY_BLOCK
        self.flex: bool | None = None  # whole windows through FlexAttention; None: on CUDA

    def qkv(
        self, x: Tensor, cache: LayerCache | None = None, cuts: Restarts | None = None
    ) -> tuple[Tensor, ...]:
        """(B, nh, T, hs) each, contiguous: one copy here instead of one per matmul below."""
        B, T, _C = x.shape
        qkv = self.canon(self.c_attn(x), cache, cuts).view(B, T, 3, self.n_head, self.head_size)
        return qkv.permute(2, 0, 3, 1, 4).contiguous().unbind(0)

    def forward(
        self,
        x: Tensor,
        start: int = 0,
        cache: LayerCache | None = None,
        cuts: Restarts | None = None,
    ) -> Tensor:
        q, k, v = self.qkv(x, cache, cuts)
        k, v = self.store(k, v, start, cache)
        T = q.size(2)
        if not self.wants_pattern() and use_flex(
            self.flex, q, k.size(2), self.training and self.dropout > 0
        ):
            qr, kr = self.position_projections()
            y = flex.relative_attention(q, k, v, qr, kr, self.scale, self.max_rel, self.causal)
            return self.merge(y)
        if (
            self.causal
            and k.size(2) == T
            and self.query_block < T
            and not (self.training and self.dropout > 0)
            and not self.wants_pattern()
        ):
            return self.merge(self.blocked_causal(q, k, v))
        return self.merge(self.mix(self.hook_pattern(self.weights(q, k, start)), v))

    def blocked_causal(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """A whole causal window, query rows in blocks: the rows i0 .. i1-1 attend to keys
        0 .. i1-1 only (content and c2p computed for those; p2c once for the whole window)."""
        T = q.size(2)
        qr, kr = self.position_projections()
        q, qr = q * self.scale, qr * self.scale
        kr_rev, qr_fwd = self.distance_tables(qr, kr, T)
        ends = [min(T, i0 + self.query_block) for i0 in range(0, T, self.query_block)]
        starts = [0, *ends[:-1]]
        # p2c (B, nh, T, T) = skew_upper(k @ qr_fwd^T) transposed, cut into the blocks' boxes
        p2c = skew_upper(k @ qr_fwd.transpose(-2, -1)).transpose(-2, -1)
        p2c_blocks = [p2c[..., i0:i1, :i1] for i0, i1 in zip(starts, ends)]
        biases = []
        for b, qb in enumerate(q.split(self.query_block, dim=2)):
            # (.., rows, i1): c2p of this block's rows against keys 0 .. i1-1
            c2p = skew_lower_block(qb @ kr_rev[:, T - ends[b] :].transpose(-2, -1))
            biases.append(c2p + p2c_blocks[b])
        return causal_blocks(q, k, v, self.query_block, scale=1.0, biases=biases)

    def probs(self, x: Tensor) -> Tensor:  # (B, nh, T, T)
        q, k, _ = self.qkv(x)
        return self.weights(q, k, 0)

    def weights(self, q: Tensor, k: Tensor, start: int) -> Tensor:
        """q (B, nh, Tq, hs), k (B, nh, S, hs) -> probabilities (B, nh, Tq, S)."""
        Tq, S = q.size(2), k.size(2)
        d = distances(Tq, S, start, q.device)  # (Tq, S) i - j
        qr, kr = self.position_projections()  # (nh, 2k, hs) each
        q, qr = q * self.scale, qr * self.scale  # scale the small factors, not (Tq, S)
        if self.causal and Tq == S:  # a whole causal window: skew, no gather
            c2p, p2c = self.skewed_terms(q, k, qr, kr)
        elif Tq == S:  # a whole bidirectional window (mlm)
            c2p, p2c = self.skewed_terms_both(q, k, qr, kr)
        else:
            c2p, p2c = self.gathered_terms(q, k, qr, kr, d, start)
        logits = (q @ k.transpose(-2, -1)).add_(c2p).add_(p2c)  # in place: no new (Tq, S) buffers
        if self.causal:  # an additive mask: its backward is free (softmax already zeroes it)
            logits.add_(causal_bias(d, logits.dtype))
        # bf16 in, bf16 out, fp32 inside: no copies on CPU (CUDA's autocast returns fp32: cast back)
        return F.softmax(logits, dim=-1).to(q.dtype)

    def gathered_terms(
        self, q: Tensor, k: Tensor, qr: Tensor, kr: Tensor, d: Tensor, start: int
    ) -> tuple[Tensor, Tensor]:
        """Any window (cached decoding, bidirectional): c2p and p2c by gathering (B, nh, Tq, S)."""
        Tq, S = q.size(2), k.size(2)
        lo, hi = start - (S - 1), start + Tq - 1  # range of i - j
        if self.causal:  # future keys are masked anyway: read them at distance 0
            lo = max(lo, 0)
        dc = d.clamp(min=lo)
        c2p = self.relative_term(q, kr, dc, lo, hi)  # [i, j] = q_i . kr[δ(i, j)]
        p2c = self.relative_term(k, qr, -dc.T, -hi, -lo).transpose(-2, -1)  # k_j . qr[δ(j, i)]
        return c2p, p2c

    def skewed_terms(self, q: Tensor, k: Tensor, qr: Tensor, kr: Tensor) -> tuple[Tensor, Tensor]:
        """Causal (T, T) window: c2p and p2c as matmuls against per-distance tables, then skewed.

        skew_lower turns q @ [0; kr[δ(T-1)], ..., kr[δ(0)]]^T into c2p[i, j] = q_i . kr[δ(i - j)]
        (the zero row stands in for padding the scores); skew_upper mirrors it for p2c.
        """
        kr_rev, qr_fwd = self.distance_tables(qr, kr, q.size(2))
        c2p = skew_lower(q @ kr_rev.transpose(-2, -1))
        p2c = skew_upper(k @ qr_fwd.transpose(-2, -1))
        return c2p, p2c.transpose(-2, -1)  # entries above the diagonal are junk, masked later

    def distance_tables(self, qr: Tensor, kr: Tensor, T: int) -> tuple[Tensor, Tensor]:
        """(nh, T+1, hs) each: [0; kr[δ(T-1)], ..., kr[δ(0)]] and [qr[δ(0)], ..., qr[δ(1-T)]; 0]."""
        H, _, hs = qr.shape
        k_ = self.max_rel
        dist = torch.arange(T, device=qr.device)
        zero = qr.new_zeros(H, 1, hs)
        kr_rev = torch.cat((zero, kr[:, dist.flip(0).clamp(max=k_ - 1) + k_]), dim=1)
        qr_fwd = torch.cat((qr[:, (-dist).clamp(min=-k_) + k_], zero), dim=1)
        return kr_rev, qr_fwd

    def skewed_terms_both(
        self, q: Tensor, k: Tensor, qr: Tensor, kr: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Bidirectional (T, T) window: as skewed_terms over distances T-1 .. -(T-1)."""
        _B, H, T, hs = q.shape
        k_ = self.max_rel
        rows = (T - torch.arange(1, 2 * T, device=q.device)).clamp(-k_, k_ - 1) + k_  # δ(T - m)
        zero = q.new_zeros(H, 1, hs)
        kr_t, qr_t = (torch.cat((zero, t[:, rows]), dim=1) for t in (kr, qr))  # (nh, 2T, hs)
        c2p = skew_both(q @ kr_t.transpose(-2, -1))  # [i, j] = q_i . kr[δ(i - j)]
        p2c = skew_both(k @ qr_t.transpose(-2, -1))  # [j, i] = k_j . qr[δ(j - i)]
        return c2p, p2c.transpose(-2, -1)

    def position_projections(self) -> tuple[Tensor, Tensor]:
        qr, kr = self.c_pos(self.rel_emb.weight).chunk(2, dim=1)  # (2k, C) each
        n = qr.size(0)
        return (
            qr.view(n, self.n_head, self.head_size).transpose(0, 1),
            kr.view(n, self.n_head, self.head_size).transpose(0, 1),
        )

    def relative_term(self, x: Tensor, table: Tensor, d: Tensor, lo: int, hi: int) -> Tensor:
        """out[b, h, n, m] = x[b, h, n] . table[h, δ(d[n, m])]; only rows δ(lo..hi) are read."""
        k = self.max_rel
        first, last = max(min(lo, k - 1), -k) + k, max(min(hi, k - 1), -k) + k
        scores = x @ table[:, first : last + 1].transpose(-2, -1)  # (B, nh, N, rows)
        idx = d.clamp(-k, k - 1) + (k - first)  # (N, M)
        B, H, N, _ = scores.shape
        return scores.gather(-1, idx.expand(B, H, N, idx.size(1)))


class DistanceAttention(Attention):
    """pos / uni: weights depend on the distance i - j only (no queries, no keys); causal."""

    has_keys = False

    def __init__(self, cfg: ModelConfig, causal: bool, rel_emb: nn.Embedding | None = None) -> None:
        super().__init__(cfg, causal)
        assert causal, "distance-only attention is defined for decoders"
        self.c_v = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)  # values only
        self.canon_b = canon_layer(cfg, "B", cfg.n_embd)  # on v: there are no q, k

    def distance_logits(self, d: Tensor, start: int) -> Tensor:  # (Tq, S) -> (nh, Tq, S) logits
        raise NotImplementedError

    def weights(self, n_query: int, n_key: int, start: int, device: torch.device) -> Tensor:
        d = distances(n_query, n_key, start, device)
        return masked_softmax(self.distance_logits(d, start), d)  # (nh, Tq, S), shared by the batch

    def forward(
        self,
        x: Tensor,
        start: int = 0,
        cache: LayerCache | None = None,
        cuts: Restarts | None = None,
    ) -> Tensor:
        v = self.heads(self.canon(self.c_v(x), cache, cuts))
        _, v = self.store(None, v, start, cache)  # (B, nh, S, hs)
        y = None if self.wants_pattern() else self.fused(v, x.size(1))
        if y is None:
            p = self.weights(x.size(1), v.size(2), start, x.device).to(v.dtype)
            if self.wants_pattern():  # the hook sees one pattern per batch row, as elsewhere
                p = self.hook_pattern(p.expand(v.size(0), -1, -1, -1))
            y = self.mix(p, v)
        return self.merge(y)

    def fused(self, v: Tensor, n_query: int) -> Tensor | None:
        """The output through a fused kernel where one applies, else None."""
        return None

    def probs(self, x: Tensor) -> Tensor:  # (B, nh, T, T)
        B, T, _ = x.shape
        return self.weights(T, T, 0, x.device).expand(B, -1, -1, -1)


class PositionAttention(DistanceAttention):
    """pos: a learned logit per (head, distance); zeros at init, i.e. uniform causal averaging."""

    def __init__(self, cfg: ModelConfig, causal: bool, rel_emb: nn.Embedding | None = None) -> None:
        super().__init__(cfg, causal)
        self.distance_weight = nn.Parameter(torch.zeros(cfg.n_head, cfg.context))  # (nh, context)
        self.flex: bool | None = None  # whole windows through FlexAttention; None: on CUDA

    def fused(self, v: Tensor, n_query: int) -> Tensor | None:
        if not use_flex(self.flex, v, n_query, self.training and self.dropout > 0):
            return None
        return flex.distance_attention(v, self.distance_weight)

    def distance_logits(self, d: Tensor, start: int) -> Tensor:
        w = self.distance_weight
        T = d.size(0)
        if start == 0 and d.size(1) == T <= w.size(1):  # a training window: skew, no scatter-add
            row = torch.cat((w.new_zeros(w.size(0), 1), w[:, :T].flip(-1)), dim=1)  # (nh, T+1)
            return skew_lower(row[:, None, :].expand(-1, T, -1).contiguous())
        return w[:, d.clamp(0, w.size(1) - 1)]


class UniformAttention(DistanceAttention):
    """uni: head h = 1..nh averages the 2^h - 1 most recent tokens, itself included."""

    width: Tensor  # (nh,) buffer

    def __init__(self, cfg: ModelConfig, causal: bool, rel_emb: nn.Embedding | None = None) -> None:
        super().__init__(cfg, causal)
        widths = [uniform_width(h) for h in range(1, cfg.n_head + 1)]
        self.register_buffer("width", torch.tensor(widths), persistent=False)  # (nh,)

    def distance_logits(self, d: Tensor, start: int) -> Tensor:
        inside = d[None] < self.width[:, None, None]  # (nh, Tq, S)
        zero = torch.zeros((), device=d.device)
        return torch.where(inside, zero, float("-inf"))


def use_flex(setting: bool | None, q: Tensor, n_key: int, dropout: bool) -> bool:
    """FlexAttention for a whole window (queries = keys), without attention dropout (it has
    none); `setting` None means wherever it trains (CUDA)."""
    wanted = flex.available(q) if setting is None else setting
    return wanted and q.size(2) == n_key > 1 and not dropout


def uniform_width(h: int) -> int:
    """Window width of uni head h (1-based): 2^h - 1, capped where it exceeds any sequence."""
    return 2 ** min(h, 40) - 1


AttentionBuilder = Callable[[ModelConfig, bool, "nn.Embedding | None"], Attention]

ATTENTIONS: dict[PE, AttentionBuilder] = {
    PE.ABS: DotProductAttention,
    PE.REL: RelativeAttention,
    PE.ROT: RotaryAttention,
    PE.POS: PositionAttention,
    PE.UNI: UniformAttention,
    PE.NONE: DotProductAttention,  # NoPE: no embedding, no rotation; the causal mask only
}
