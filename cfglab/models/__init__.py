"""Models: a GPT whose attention is chosen by position encoding, and an encoder-only masked LM.

cfg = ModelConfig(vocab_size=8, pe="rot")
model = build_model(cfg)          # MODEL_BUILDERS[cfg.pe](cfg)
logits, loss = model(idx, targets)

`PE` (the list of position encodings) and `ModelConfig` import without torch: the CLI's start
time and the run directory's config need them. Everything else loads torch on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cfglab.models.config import DECODER_PES, MLM_PES, PE, ModelConfig

if TYPE_CHECKING:
    from cfglab.models.attention import ATTENTIONS, LayerCache, uniform_width
    from cfglab.models.build import MODEL_BUILDERS, build_model, describe
    from cfglab.models.encoder import MASK_RATE, MaskedLM, mask_tokens
    from cfglab.models.gpt import GPT, IGNORE_INDEX, KVCache, Transformer

_LAZY = {
    "attention": ("ATTENTIONS", "LayerCache", "uniform_width"),
    "build": ("MODEL_BUILDERS", "build_model", "describe"),
    "encoder": ("MASK_RATE", "MaskedLM", "mask_tokens"),
    "gpt": ("GPT", "IGNORE_INDEX", "KVCache", "Transformer"),
}
_MODULE_OF = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'cfglab.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"cfglab.models.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "ATTENTIONS",
    "DECODER_PES",
    "GPT",
    "IGNORE_INDEX",
    "MASK_RATE",
    "MLM_PES",
    "MODEL_BUILDERS",
    "PE",
    "KVCache",
    "LayerCache",
    "MaskedLM",
    "ModelConfig",
    "Transformer",
    "build_model",
    "describe",
    "mask_tokens",
    "uniform_width",
]
