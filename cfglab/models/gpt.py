"""A pre-LN transformer (GPT-2 layout, GELU MLP) whose attention comes from `ATTENTIONS`.

`Transformer` is the trunk shared by the decoder (`GPT`, causal, with KV-cached generation) and
the encoder (`encoder.MaskedLM`, bidirectional). Targets are given per position (the caller
shifts them for next-token prediction); -100 marks positions without a loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from cfglab.errors import CfglabError
from cfglab.models.attention import ATTENTIONS, Attention, LayerCache
from cfglab.models.canon import Canon, CanonTail, Restarts, canon_layer, restarts
from cfglab.models.config import PE, ModelConfig
from cfglab.models.hooks import HookPoint, capture

IGNORE_INDEX = -100  # targets with this value carry no loss (padding, unmasked mlm positions)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, cfg.mlp_ratio * cfg.n_embd, bias=cfg.bias)
        self.canon_d = canon_layer(cfg, "D", cfg.mlp_ratio * cfg.n_embd)  # on the up projection
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(cfg.mlp_ratio * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: Tensor, cuts: Restarts | None = None, tail: CanonTail | None = None
    ) -> Tensor:  # (B, T, C) -> (B, T, C)
        up = self.c_fc(x)
        if self.canon_d is not None:
            up = self.canon_d(up, cuts, tail)
        return self.dropout(self.c_proj(self.gelu(up)))


class Block(nn.Module):
    """x + attn(canon_a(ln(x))), then x + mlp(canon_c(ln(x))); without Canon layers (the
    default) x + attn(ln(x)), then x + mlp(ln(x)). `cuts`: the Canon taps a BOS cuts
    (models/canon.py)."""

    def __init__(self, cfg: ModelConfig, attn: Attention) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.canon_a = canon_layer(cfg, "A", cfg.n_embd)
        self.attn = attn
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.canon_c = canon_layer(cfg, "C", cfg.n_embd)
        self.mlp = MLP(cfg)
        self.hook_resid_pre, self.hook_attn_out = HookPoint(), HookPoint()
        self.hook_resid_mid, self.hook_mlp_out = HookPoint(), HookPoint()
        self.hook_resid_post = HookPoint()
        for place, layer in self.canons().items():  # blocks.{i}.hook_canon_a ... _d
            setattr(self, f"hook_canon_{place.lower()}", layer.hook)

    def canons(self) -> dict[str, Canon]:
        """This block's Canon layers by place ("A".."D"), only those the config asks for."""
        found = {"A": self.canon_a, "B": self.attn.canon_b, "C": self.canon_c}
        found["D"] = self.mlp.canon_d
        return {place: layer for place, layer in found.items() if layer is not None}

    def forward(
        self,
        x: Tensor,
        start: int = 0,
        cache: LayerCache | None = None,
        cuts: Restarts | None = None,
    ) -> Tensor:
        x = self.hook_resid_pre(x)
        tails = cache.canon if cache is not None else {}
        a = _canon(self.canon_a, self.ln_1(x), cuts, tails.get("A"))
        x = self.hook_resid_mid(x + self.hook_attn_out(self.attn(a, start, cache, cuts)))
        c = _canon(self.canon_c, self.ln_2(x), cuts, tails.get("C"))
        return self.hook_resid_post(x + self.hook_mlp_out(self.mlp(c, cuts, tails.get("D"))))


def _canon(layer: Canon | None, h: Tensor, cuts: Restarts | None, tail: CanonTail | None) -> Tensor:
    return h if layer is None else layer(h, cuts, tail)


@dataclass
class KVCache:
    """Every layer's keys/values for the tokens decoded so far (see GPT.init_cache)."""

    layers: list[LayerCache]
    length: int = 0  # tokens already cached = absolute position of the next token
    capacity: int = 0  # tokens the buffers hold
    resets: Tensor | None = None  # (B, K-1) BOS flags of the last tokens (Canon models only)

    def select(self, rows: Tensor) -> KVCache:
        """The cache of some batch rows only (a bool mask or indices), e.g. unfinished ones."""
        layers = [
            LayerCache(
                k=None if c.k is None else c.k[rows],
                v=c.v[rows],
                canon={p: CanonTail(t.inputs[rows]) for p, t in c.canon.items()},
            )
            for c in self.layers
        ]
        resets = None if self.resets is None else self.resets[rows]
        return KVCache(layers=layers, length=self.length, capacity=self.capacity, resets=resets)


class Transformer(nn.Module):
    """Embeddings, blocks, final LayerNorm and head; `causal` picks decoder or encoder."""

    def __init__(self, cfg: ModelConfig, causal: bool) -> None:
        super().__init__()
        self.cfg, self.causal = cfg, causal
        C, kind = cfg.n_embd, cfg.attention
        self.wte = nn.Embedding(cfg.vocab_size, C)
        self.wpe = nn.Embedding(cfg.context, C) if kind == PE.ABS else None
        self.rel_emb = nn.Embedding(2 * cfg.rel_span, C) if kind == PE.REL else None
        self.drop = nn.Dropout(cfg.dropout)
        self.hook_embed = HookPoint()
        build = ATTENTIONS[kind]
        self.blocks = nn.ModuleList(
            Block(cfg, build(cfg, causal, self.rel_emb)) for _ in range(cfg.n_layer)
        )
        self.ln_f = nn.LayerNorm(C, bias=cfg.bias)
        self.lm_head = nn.Linear(C, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.lm_head.weight = self.wte.weight
        self.apply(_init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / (2 * cfg.n_layer) ** 0.5)

    def layers(self) -> list[Block]:
        """The blocks, typed (nn.ModuleList yields plain Modules)."""
        return [block for block in self.blocks if isinstance(block, Block)]

    def embed(self, idx: Tensor, start: int = 0) -> Tensor:  # (B, T) -> (B, T, C)
        x = self.wte(idx)
        if self.wpe is not None:
            end = start + idx.size(1)
            if end > self.cfg.context:
                raise CfglabError(
                    f"abs position embeddings cover {self.cfg.context} positions, but the "
                    f"sequence reaches position {end}; shorten it, raise context, or use "
                    "rot/rel/pos/uni (they run past the training context)"
                )
            x = x + self.wpe(torch.arange(start, end, device=idx.device))
        return self.hook_embed(self.drop(x))

    def hidden(self, idx: Tensor, start: int = 0, cache: KVCache | None = None) -> list[Tensor]:
        """Residual stream after the embedding and after every block: L + 1 of (B, T, C)."""
        xs = [self.embed(idx, start)]
        cuts = self.restarts(idx, cache)
        for i, block in enumerate(self.blocks):
            xs.append(block(xs[-1], start, cache.layers[i] if cache else None, cuts))
        return xs

    def restarts(self, idx: Tensor, cache: KVCache | None) -> Restarts | None:
        """The Canon taps a BOS cuts, once for every layer: from idx's BOS flags, after the cached
        tokens' when decoding (positions then count the K-1 cached tokens first; the cache
        keeps the newest K-1 flags). None without Canon layers."""
        bos, K = self.cfg.bos_id, self.cfg.canon_kernel
        if not self.cfg.canon or bos is None:
            return None
        flags = idx == bos
        if cache is not None:
            prev = cache.resets if cache.resets is not None else flags.new_zeros(len(idx), K - 1)
            flags = torch.cat((prev, flags), dim=1)
            cache.resets = flags[:, flags.size(1) - (K - 1) :]
        return restarts(flags, K)

    def trunk(self, idx: Tensor, start: int = 0, cache: KVCache | None = None) -> Tensor:
        return self.hidden(idx, start, cache)[-1]  # (B, T, C), before ln_f

    def logits(self, h: Tensor) -> Tensor:
        """ln_f and the head in the weights' dtype (fp32), also under bf16 autocast: bf16 logits
        (8-bit mantissa) would round off the hundredths of a nat per token that separate a good
        CFG model from a perfect one, and with a vocabulary this small fp32 costs nothing."""
        with torch.autocast(h.device.type, enabled=False):
            return self.lm_head(self.ln_f(h.to(self.lm_head.weight.dtype)))

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """idx (B, T) -> logits (B, T, V), and the mean cross-entropy over targets != -100."""
        logits = self.logits(self.trunk(idx))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)),
            targets.reshape(-1),
            ignore_index=IGNORE_INDEX,
        )
        return logits, loss

    def forward_hidden(self, idx: Tensor) -> list[Tensor]:
        """Hidden states for probes: after the embedding and after each block (no ln_f), as
        the hook points `hook_embed` and `blocks.{i}.hook_resid_post` pass them on."""
        names = ["hook_embed"] + [f"blocks.{i}.hook_resid_post" for i in range(len(self.blocks))]
        with capture(self, names) as seen:
            self.trunk(idx)
        return [seen[n] for n in names]

    @torch.no_grad()
    def attention_maps(self, idx: Tensor) -> Tensor:
        """Attention probabilities (L, B, nh, T, T) as `blocks.{i}.attn.hook_pattern` passes them
        on (hooking forces the explicit path; rows sum to 1)."""
        names = [f"blocks.{i}.attn.hook_pattern" for i in range(len(self.blocks))]
        with capture(self, names) as seen:
            self.trunk(idx)
        return torch.stack([seen[n] for n in names])

    def explicit_attention(self, on: bool = True) -> None:
        """Route every attention layer through its explicit path (and so through
        `hook_pattern`) even with no torch hook attached: what nnsight needs to read or patch
        the pattern."""
        for block in self.layers():
            block.attn.explicit = on

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count (shared tensors once); non_embedding drops position tables (nanoGPT)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= sum(t.weight.numel() for t in (self.wpe, self.rel_emb) if t is not None)
        return n


class GPT(Transformer):
    """The decoder: causal attention, next-token logits, a KV cache (`init_cache`, `step`).

    Sampling lives in one place, `cfglab.evaluate.generation.generate`, for every caller.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg, causal=True)

    def init_cache(self, batch: int, capacity: int | None = None) -> KVCache:
        """Empty cache for `batch` rows and `capacity` tokens (default: the context)."""
        capacity = capacity or self.cfg.context
        if self.wpe is not None and capacity > self.cfg.context:
            raise CfglabError(
                f"abs position embeddings cover {self.cfg.context} positions; cannot decode "
                f"{capacity} tokens (use rot/rel/pos/uni to run past the training context)"
            )
        p = self.wte.weight
        layers = []
        for b in self.layers():
            layer = b.attn.new_cache(batch, capacity, p.device, p.dtype)
            layer.canon = {pl: c.new_tail(batch, p.device, p.dtype) for pl, c in b.canons().items()}
            layers.append(layer)
        resets = None
        if self.cfg.canon:  # positions before 0 are no BOS: the zeros there are padding
            P = self.cfg.canon_kernel - 1
            resets = torch.zeros(batch, P, dtype=torch.bool, device=p.device)
        return KVCache(layers=layers, length=0, capacity=capacity, resets=resets)

    def step(self, idx_new: Tensor, cache: KVCache) -> Tensor:
        """Feed (B, Tn) new tokens after those in `cache`; returns their logits (B, Tn, V)."""
        start, end = cache.length, cache.length + idx_new.size(1)
        if end > cache.capacity:
            raise CfglabError(f"KV cache holds {cache.capacity} tokens; step would reach {end}")
        logits = self.logits(self.trunk(idx_new, start, cache))
        cache.length = end
        return logits


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
