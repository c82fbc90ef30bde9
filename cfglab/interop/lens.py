"""abs and rot runs as TransformerLens models, built offline from the exported HF model.

TransformerLens 4 removed `HookedTransformer`; its replacement is `TransformerBridge`, which
wraps a transformers model with TransformerLens's hook names (`blocks.{i}.attn.hook_pattern`,
`hook_resid_post`, ...), `run_with_cache` and `run_with_hooks`. `enable_compatibility_mode()`
on the result gives HookedTransformer's numerics (folded LayerNorm, centred weights); the
default keeps the model's own weights, so its logits equal cfglab's.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


def transformer_lens_model(
    run_dir: str | Path,
    step: int | None = None,
    device: str = "cpu",
    hooked_transformer_numerics: bool = False,
) -> TransformerBridge:
    """Open an abs/rot run as a TransformerLens `TransformerBridge` (no network: a local export).

    `hooked_transformer_numerics`: call `enable_compatibility_mode()`, i.e. fold LayerNorm
    and centre the weights as HookedTransformer did; the logits then differ from cfglab's by a
    constant per position (the centred unembedding), the log-probabilities do not."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory: never ask the Hub
    from transformer_lens.model_bridge import TransformerBridge

    from cfglab.interop.export import export_run

    with tempfile.TemporaryDirectory(prefix="cfglab-tl-") as tmp:
        out = export_run(run_dir, Path(tmp) / "hf", step=step)
        bridge = TransformerBridge.boot_transformers(str(out), device=device)
    if hooked_transformer_numerics:
        bridge.enable_compatibility_mode()
    return bridge
