"""Runs as TransformerLens models: abs and rot through the exported HF model, every encoding
(rel, pos, uni, the masked LM; abs and rot too with `native=True`) through `CfglabLens`, a
`HookedRootModule` around the live cfglab module (cfglab.interop.lens_native).

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

from cfglab.errors import CfglabError
from cfglab.interop.extra import require

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

    from cfglab.interop.lens_native import CfglabLens


def transformer_lens_model(
    run_dir: str | Path,
    step: int | None = None,
    device: str = "cpu",
    hooked_transformer_numerics: bool = False,
    native: bool | None = None,
) -> TransformerBridge | CfglabLens:
    """Open a run in TransformerLens (no network).

    abs/rot (default): a `TransformerBridge` over the local Hugging Face export.
    rel, pos, uni, mlm, or `native=True`: a `CfglabLens` (HookedRootModule) around the cfglab
    module itself: `run_with_cache`, `run_with_hooks`, cfglab's hook names, cfglab's logits.

    `hooked_transformer_numerics` (bridge only): call `enable_compatibility_mode()`, i.e. fold
    LayerNorm and centre the weights as HookedTransformer did; the logits then differ from
    cfglab's by a constant per position (the centred unembedding), the log-probabilities do not."""
    from cfglab.interop.export import EXPORTABLE_PES
    from cfglab.runs import RunDir

    pe = RunDir(Path(run_dir)).read_config().pe
    if native or (native is None and pe not in EXPORTABLE_PES):
        if hooked_transformer_numerics:
            raise CfglabError(
                "hooked_transformer_numerics needs the TransformerBridge (abs or rot, "
                "native=False); CfglabLens keeps cfglab's own weights and numerics"
            )
        return _native(run_dir, step, device)
    require("transformer_lens", "transformers", what="TransformerLens's TransformerBridge")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory: never ask the Hub
    from transformer_lens.model_bridge import TransformerBridge

    from cfglab.interop.export import export_run

    with tempfile.TemporaryDirectory(prefix="cfglab-tl-") as tmp:
        out = export_run(run_dir, Path(tmp) / "hf", step=step)
        bridge = TransformerBridge.boot_transformers(str(out), device=device)
    if hooked_transformer_numerics:
        bridge.enable_compatibility_mode()
    return bridge


def _native(run_dir: str | Path, step: int | None, device: str) -> CfglabLens:
    require("transformer_lens", what="CfglabLens (a TransformerLens HookedRootModule)")
    from cfglab.interop.lens_native import CfglabLens
    from cfglab.runs import load_run

    return CfglabLens(load_run(run_dir, step=step, device=device).model, copy_model=False)
