"""Building a model from its config, and describing it (parameter counts by part)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from cfglab.models.config import PE, ModelConfig
from cfglab.models.encoder import MaskedLM
from cfglab.models.gpt import GPT, Transformer

MODEL_BUILDERS: dict[PE, Callable[[ModelConfig], Transformer]] = {
    PE.ABS: GPT,
    PE.REL: GPT,
    PE.ROT: GPT,
    PE.POS: GPT,
    PE.UNI: GPT,
    PE.NONE: GPT,
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
    parts = (
        (".canon_", "canon layers"),
        (".attn.", "attention"),
        (".mlp.", "mlp"),
        ("ln", "layer norms"),
    )
    for key, part in parts:
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
    if cfg.canon:
        pe += f" + canon {cfg.canon} (kernel {cfg.canon_kernel})"
    if cfg.rope_dim is not None and cfg.attention == PE.ROT:
        pe += f" (rope_dim {cfg.rope_dim} of {cfg.head_size})"
    head = (
        f"{pe}: {cfg.n_layer} layers, {cfg.n_head} heads, {cfg.n_embd} dims, context {cfg.context}"
    )
    lines = [head] + [f"  {part:<24}{n:>12,}" for part, n in counts.items()]
    lines.append(f"  {'total':<24}{sum(counts.values()):>12,}")
    if cfg.tie_weights:
        lines.append("  (output head tied to the token embedding)")
    return "\n".join(lines)
