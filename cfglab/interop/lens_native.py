"""Any cfglab model (every encoding and the masked LM) as a TransformerLens `HookedRootModule`.

TransformerLens 4 builds a `TransformerBridge` only from a transformers architecture, and rel,
pos, uni and the encoder have none. What 4.x keeps for arbitrary modules is `HookedRootModule`
("wrap any module's tensors in HookPoint wrappers, call setup()"): `CfglabLens` is that wrapper
around the live cfglab module. Every cfglab hook point (cfglab.models.hooks) is replaced by a
TransformerLens `HookPoint` under the same name, so `run_with_cache`, `run_with_hooks`,
`hooks(...)` and `hook_dict` see

    hook_embed                     (B, T, d)              token (+ abs position) embedding
    blocks.{i}.hook_resid_pre      (B, T, d)              the block's input
    blocks.{i}.attn.hook_pattern   (B, heads, T, T)       attention probabilities
    blocks.{i}.hook_attn_out       (B, T, d)              the attention branch
    blocks.{i}.hook_resid_mid      (B, T, d)              after the attention branch
    blocks.{i}.hook_mlp_out        (B, T, d)              the MLP branch
    blocks.{i}.hook_resid_post     (B, T, d)              the block's output

The computation is cfglab's own (the logits are cfglab's, bit for bit); `forward(tokens)`
returns the logits (B, T, V), as a TransformerLens model does. Not HookedTransformer's numerics:
no folded LayerNorm, no centred weights, and `hook_q`/`hook_k`/`hook_z` do not exist (the
attention variants differ in what q and k are: pos and uni have none).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint as LensHookPoint
from transformer_lens.HookedRootModule import HookedRootModule

from cfglab.models.gpt import Transformer
from cfglab.models.hooks import HookPoint


class _Point(LensHookPoint):
    """A TransformerLens HookPoint that also answers cfglab's `hooked()` (attention takes its
    explicit path, the one that materialises `hook_pattern`, while a hook is attached)."""

    def hooked(self) -> bool:
        return bool(self._forward_hooks or self._forward_pre_hooks)


@dataclass(frozen=True)
class LensConfig:
    """The fields of a TransformerLens config that readers of a cache most often ask for."""

    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    d_vocab: int
    n_ctx: int
    positional_embedding_type: str  # cfglab's pe (mlm: "mlm/abs", "mlm/rel")
    causal: bool


class CfglabLens(HookedRootModule):
    """A cfglab Transformer behind TransformerLens's hook interface (see the module docstring).

    The model's parts are registered on the wrapper itself, so the hook names carry no prefix.
    `copy_model=False` swaps the hook points of the given module in place."""

    def __init__(self, model: Transformer, copy_model: bool = True) -> None:
        super().__init__()
        model = copy.deepcopy(model) if copy_model else model
        _swap_hook_points(model)
        object.__setattr__(self, "_inner", model)  # not a submodule: no "model." prefix
        for name, child in model.named_children():
            self.add_module(name, child)
        c = model.cfg
        pe = f"mlm/{c.attention.value}" if not model.causal else c.attention.value
        self.cfg = LensConfig(
            c.n_layer, c.n_embd, c.n_head, c.head_size, c.vocab_size, c.context, pe, model.causal
        )
        self.setup()

    @property
    def model(self) -> Transformer:
        """The cfglab module (its own forward, hooks shared with the wrapper)."""
        inner: Transformer = object.__getattribute__(self, "_inner")
        return inner

    def forward(self, tokens: Tensor, **_: Any) -> Tensor:
        return self.model(tokens)[0]


def _swap_hook_points(model: nn.Module) -> None:
    for name, module in list(model.named_modules()):
        if isinstance(module, HookPoint):
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, _Point())
