"""cfglab models in the tools interpretability users already have.

    export_run(RUN_DIR, OUT_DIR)       a Hugging Face model directory (abs: GPT2LMHeadModel,
                                       rot: GPTNeoXForCausalLM) + a tokenizer over the terminals
    to_hf(loaded_run)                  the same model in memory (a transformers PreTrainedModel)
    transformer_lens_model(RUN_DIR)    TransformerLens: a TransformerBridge (abs, rot) or a
                                       CfglabLens HookedRootModule (every encoding, mlm too)
    write_activations(RUN_DIR, OUT, n) residual streams + per-token labels as safetensors
    HFDecoder                          any HF causal LM behind cfglab's decoder interface, so
                                       `cfglab evaluate --hf` runs the one evaluation code path

transformers, tokenizers and transformer_lens are imported inside the functions only.
"""

from __future__ import annotations

from cfglab.interop.activations import write_activations
from cfglab.interop.export import EXPORTABLE_PES, export_run, grammar_tokenizer, to_hf
from cfglab.interop.lens import transformer_lens_model

__all__ = [
    "EXPORTABLE_PES",
    "export_run",
    "grammar_tokenizer",
    "to_hf",
    "transformer_lens_model",
    "write_activations",
]
