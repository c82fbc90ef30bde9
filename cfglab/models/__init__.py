"""Models: a GPT whose attention is chosen by position encoding, and an encoder-only masked LM.

cfg = ModelConfig(vocab_size=8, pe="rot")
model = build_model(cfg)          # MODEL_BUILDERS[cfg.pe](cfg)
logits, loss = model(idx, targets)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from cfglab.models.attention import ATTENTIONS, LayerCache, uniform_width
from cfglab.models.config import DECODER_PES, MLM_PES, PE, ModelConfig
from cfglab.models.encoder import MASK_RATE, MaskedLM, mask_tokens
from cfglab.models.gpt import GPT, IGNORE_INDEX, KVCache, Transformer

MODEL_BUILDERS: dict[PE, Callable[[ModelConfig], Transformer]] = {
    PE.ABS: GPT,
    PE.REL: GPT,
    PE.ROT: GPT,
    PE.POS: GPT,
    PE.UNI: GPT,
    PE.MLM: MaskedLM,
}


def build_model(cfg: ModelConfig) -> Transformer:
    return MODEL_BUILDERS[PE(cfg.pe)](cfg)


def _part(name: str) -> str:
    """Which part of the model a parameter name belongs to."""
    if name.startswith(("wte", "wpe", "rel_emb")):
        return {"wte": "token embedding", "wpe": "position embedding"}.get(
            name.split(".")[0], "relative position table"
        )
    for key, part in ((".attn.", "attention"), (".mlp.", "mlp"), ("ln", "layer norms")):
        if key in name:
            return part
    return "output head" if name.startswith("lm_head") else "other"


def describe(cfg: ModelConfig, model: Transformer | None = None) -> str:
    """Parameter counts by part, one line each; builds the model unless it is given."""
    model = model if model is not None else build_model(cfg)
    counts: dict[str, int] = defaultdict(int)
    for name, p in model.named_parameters():  # shared tensors (tied head, rel table) once
        counts[_part(name)] += p.numel()
    pe = f"mlm/{PE(cfg.mlm_pe).value}" if cfg.pe == PE.MLM else PE(cfg.pe).value
    head = (
        f"{pe}: {cfg.n_layer} layers, {cfg.n_head} heads, {cfg.n_embd} dims, context {cfg.context}"
    )
    lines = [head] + [f"  {part:<24}{n:>12,}" for part, n in counts.items()]
    lines.append(f"  {'total':<24}{sum(counts.values()):>12,}")
    if cfg.tie_weights:
        lines.append("  (output head tied to the token embedding)")
    return "\n".join(lines)


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
