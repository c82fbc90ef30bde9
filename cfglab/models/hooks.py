"""Named hook points: identity modules that forward hooks (and nnsight) read and patch.

Every model routes these tensors through a `HookPoint` (names as TransformerLens spells them):

    hook_embed                  (B, T, C)        token (+ abs position) embedding
    blocks.{i}.hook_resid_pre   (B, T, C)        the block's input
    blocks.{i}.attn.hook_pattern (B, nh, Tq, S)  attention probabilities (rows sum to 1)
    blocks.{i}.hook_attn_out    (B, T, C)        the attention branch, projected
    blocks.{i}.hook_resid_mid   (B, T, C)        after the attention branch is added
    blocks.{i}.hook_mlp_out     (B, T, C)        the MLP branch
    blocks.{i}.hook_resid_post  (B, T, C)        the block's output

A forward hook that returns a tensor replaces the value downstream (patching).

The attention pattern exists only on the explicit path: the fast paths (SDPA, the blocked CPU
kernels) never materialise probabilities. An attention layer therefore takes the explicit path
whenever its `hook_pattern` has a hook attached, or when `model.explicit_attention(True)` was
called (nnsight intercepts module outputs without registering torch hooks, so it needs the
switch). The explicit path computes the same function, slower and with more memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch.nn as nn
from torch import Tensor


class HookPoint(nn.Identity):
    """An identity with a name in the module tree: the place to put a forward hook."""

    def hooked(self) -> bool:
        return bool(self._forward_hooks or self._forward_pre_hooks)


@contextmanager
def capture(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, Tensor]]:
    """Record what the named hook points pass on (after any patching hook registered before)."""
    seen: dict[str, Tensor] = {}
    handles = []
    for name in names:

        def keep(_m: nn.Module, _i: object, out: Tensor, name: str = name) -> None:
            seen[name] = out

        handles.append(model.get_submodule(name).register_forward_hook(keep))
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()
