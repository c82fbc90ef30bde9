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
    run_dir: str | Path, step: int | None = None, device: str = "cpu"
) -> TransformerBridge:
    """Open an abs/rot run as a TransformerLens `TransformerBridge` (no network: a local export)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory: never ask the Hub
    from transformer_lens.model_bridge import TransformerBridge

    from cfglab.interop.export import export_run

    with tempfile.TemporaryDirectory(prefix="cfglab-tl-") as tmp:
        out = export_run(run_dir, Path(tmp) / "hf", step=step)
        return TransformerBridge.boot_transformers(str(out), device=device)
