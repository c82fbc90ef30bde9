"""Export a run to a Hugging Face model directory that loads with no cfglab and no remote code.

- abs is GPT-2's layout: `GPT2LMHeadModel`, with the four Linear weights transposed into GPT-2's
  Conv1D layout (in, out) and `activation_function="gelu"` (cfglab's MLP uses exact
  `nn.GELU()`; GPT-2's default `gelu_new` is the tanh approximation).
- rot is a sequential pre-LN block with rotary q/k: `GPTNeoXForCausalLM` with
  `use_parallel_residual=False` and `partial_rotary_factor=1.0`. cfglab rotates interleaved
  feature pairs (2m, 2m+1) by t·base^(-2m/hs); NeoX rotates the halves (m, m + hs/2) by the
  same angles, so each head's query and key rows are permuted [0, 2, 4, ..., 1, 3, 5, ...]
  (q·k is unchanged: both sides move together). NeoX fuses q, k, v per head ([h][q|k|v]);
  cfglab fuses them per kind ([q|k|v][h]). Llama-style classes would not map: they use
  RMSNorm and a gated SiLU MLP.
- the tokenizer is a WordLevel vocabulary over the grammar's terminal names plus <bos>, <eos>,
  <mask>, with the same ids as cfglab's Vocab (terminals 0..T-1, then BOS, EOS, MASK); it splits
  on whitespace (the form `cfglab verify` reads) and puts <bos> first, as in training.

- rot with `rope_dim` r (partial RoPE) is NeoX's `partial_rotary_factor` r/hs: NeoX turns
  the first r features of each head with frequencies over r, as cfglab does; only those r rows
  are permuted to rotate-half order.

rel, pos, uni, none and mlm have no stock architecture and are refused (see `REFUSED`), and so
is any model with Canon layers (`CANON_REFUSED`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfglab.errors import CfglabError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

    from cfglab.grammar.core import Grammar
    from cfglab.models.attention import Attention, DotProductAttention
    from cfglab.runs import LoadedRun

EXPORTABLE_PES = ("abs", "rot")
SPECIAL_TOKENS = ("<bos>", "<eos>", "<mask>")  # ids T, T+1, T+2 as in cfglab.data.vocab.Vocab

_WHY_NOT = {
    "rel": "its DeBERTa-style disentangled relative attention (content-to-position and "
    "position-to-content terms over a shared relative table) exists in no stock causal LM class",
    "pos": "its attention weights are a learned number per distance, with no queries or keys, "
    "which no stock architecture has",
    "uni": "its heads average fixed windows of 2^h - 1 tokens, with no queries or keys, which no "
    "stock architecture has",
    "mlm": "it is a bidirectional masked-LM encoder, not a causal LM (AutoModelForCausalLM)",
    "none": "NoPE (causal attention with no position signal) exists in no stock causal LM "
    "class cfglab maps to (GPT-2 has learned positions, GPT-NeoX rotates at least some features)",
}
REFUSED = {
    pe: f"pe {pe} cannot be exported to a stock Hugging Face architecture: {why}. Its weights "
    "are in RUN_DIR/model.safetensors (+ config.json), and the Python API opens the run: "
    "`cfglab.runs.load_run(RUN_DIR).model` (a torch module that nnsight and forward hooks can "
    "wrap)."
    for pe, why in _WHY_NOT.items()
}
CANON_REFUSED = (
    "a model with Canon layers (canon {canon}) cannot be exported to a stock Hugging Face "
    "architecture: none has Canon's causal depthwise convolutions inside its blocks. Its weights "
    "are in RUN_DIR/model.safetensors (+ config.json), and the Python API opens the run: "
    "`cfglab.runs.load_run(RUN_DIR).model` (a torch module whose hook points "
    "`blocks.{{i}}.hook_canon_a` ... `_d` forward hooks and nnsight can read and patch)."
)


def _check_exportable(loaded: LoadedRun) -> None:
    pe = loaded.config.pe
    if pe in REFUSED:
        raise CfglabError(f"{loaded.run.path}: {REFUSED[pe]}")
    cfg = loaded.model.cfg
    if cfg.canon:
        raise CfglabError(f"{loaded.run.path}: {CANON_REFUSED.format(canon=cfg.canon)}")
    if not cfg.bias:
        raise CfglabError(f"{loaded.run.path}: only models with biases export (GPT-2 has them)")


def _gpt2(loaded: LoadedRun) -> PreTrainedModel:
    from transformers import GPT2Config, GPT2LMHeadModel

    m, cfg = loaded.model, loaded.model.cfg
    vocab = _vocab(loaded.grammar)
    config = GPT2Config(
        vocab_size=cfg.vocab_size,
        n_positions=cfg.context,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        n_inner=cfg.mlp_ratio * cfg.n_embd,
        activation_function="gelu",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=m.ln_f.eps,
        tie_word_embeddings=cfg.tie_weights,
        bos_token_id=vocab.bos,
        eos_token_id=vocab.eos,
        pad_token_id=vocab.eos,
    )
    assert m.wpe is not None  # abs
    sd = {
        "transformer.wte.weight": m.wte.weight,
        "transformer.wpe.weight": m.wpe.weight,
        "transformer.ln_f.weight": m.ln_f.weight,
        "transformer.ln_f.bias": m.ln_f.bias,
        "lm_head.weight": m.lm_head.weight,
    }
    for i, b in enumerate(m.layers()):
        p, attn = f"transformer.h.{i}.", _dot_product(b.attn)
        for ln in ("ln_1", "ln_2"):
            sd[p + ln + ".weight"] = getattr(b, ln).weight
            sd[p + ln + ".bias"] = getattr(b, ln).bias
        for name, lin in (
            ("attn.c_attn", attn.c_attn),
            ("attn.c_proj", attn.c_proj),
            ("mlp.c_fc", b.mlp.c_fc),
            ("mlp.c_proj", b.mlp.c_proj),
        ):
            sd[p + name + ".weight"] = lin.weight.t()  # Linear (out, in) -> Conv1D (in, out)
            sd[p + name + ".bias"] = lin.bias
    return _filled(GPT2LMHeadModel(config), sd)


def _dot_product(attn: Attention) -> DotProductAttention:
    """abs's and rot's attention (rot's subclasses abs's): fused q, k, v in c_attn."""
    from cfglab.models.attention import DotProductAttention

    assert isinstance(attn, DotProductAttention), type(attn)
    return attn


def rotate_half_order(head_size: int) -> list[int]:
    """Rows of a head in NeoX's rotate-half order: the pairs' first members, then the seconds."""
    return list(range(0, head_size, 2)) + list(range(1, head_size, 2))


def _neox(loaded: LoadedRun) -> PreTrainedModel:
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    m, cfg = loaded.model, loaded.model.cfg
    vocab = _vocab(loaded.grammar)
    fraction = cfg.rotary_dim / cfg.head_size  # NeoX turns int(hs * fraction) features
    legacy: dict[str, Any] = {"rotary_pct": fraction, "rotary_emb_base": cfg.rope_base}
    config = GPTNeoXConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.n_embd,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        intermediate_size=cfg.mlp_ratio * cfg.n_embd,
        hidden_act="gelu",
        rope_parameters={
            "rope_type": "default",
            "rope_theta": cfg.rope_base,
            "partial_rotary_factor": fraction,
        },
        max_position_embeddings=cfg.context,
        use_parallel_residual=False,
        layer_norm_eps=m.ln_f.eps,
        attention_dropout=0.0,
        hidden_dropout=0.0,
        attention_bias=True,
        tie_word_embeddings=cfg.tie_weights,
        bos_token_id=vocab.bos,
        eos_token_id=vocab.eos,
        pad_token_id=vocab.eos,
        **legacy,  # transformers 4's names
    )
    H, hs, C = cfg.n_head, cfg.head_size, cfg.n_embd
    r = cfg.rotary_dim  # partial RoPE: only the first r rows turn; the others stay in place
    order = torch.tensor(rotate_half_order(r) + list(range(r, hs)))

    def per_head(t: torch.Tensor) -> torch.Tensor:
        """[q|k|v][head][row] (3C, ...) -> [head][q|k|v][row], q and k rows rotate-half."""
        t = t.reshape(3, H, hs, *t.shape[1:]).clone()
        t[0], t[1] = t[0][:, order], t[1][:, order]
        return t.transpose(0, 1).reshape(3 * C, *t.shape[3:])

    sd = {
        "gpt_neox.embed_in.weight": m.wte.weight,
        "gpt_neox.final_layer_norm.weight": m.ln_f.weight,
        "gpt_neox.final_layer_norm.bias": m.ln_f.bias,
        "lm_head.weight": m.lm_head.weight,
    }
    for i, b in enumerate(m.layers()):
        p, attn = f"gpt_neox.layers.{i}.", _dot_product(b.attn)
        for ours, theirs in (("ln_1", "input_layernorm"), ("ln_2", "post_attention_layernorm")):
            sd[p + theirs + ".weight"] = getattr(b, ours).weight
            sd[p + theirs + ".bias"] = getattr(b, ours).bias
        sd[p + "attention.query_key_value.weight"] = per_head(attn.c_attn.weight)
        sd[p + "attention.query_key_value.bias"] = per_head(attn.c_attn.bias)
        for theirs, lin in (
            ("attention.dense", attn.c_proj),
            ("mlp.dense_h_to_4h", b.mlp.c_fc),
            ("mlp.dense_4h_to_h", b.mlp.c_proj),
        ):
            sd[p + theirs + ".weight"] = lin.weight
            sd[p + theirs + ".bias"] = lin.bias
    return _filled(GPTNeoXForCausalLM(config), sd)


def _filled(hf: PreTrainedModel, sd: dict[str, Any]) -> PreTrainedModel:
    """Load every parameter; a key left out or unknown is a bug in the mapping, not the run's."""
    import torch

    with torch.no_grad():
        sd = {k: v.detach().to(torch.float32).contiguous() for k, v in sd.items()}
        own = dict(hf.state_dict())
        missing = sorted(set(own) - set(sd))
        if hf.config.tie_word_embeddings:  # the tied head is the embedding: not set twice
            missing = [k for k in missing if k != "lm_head.weight"]
            sd.pop("lm_head.weight", None)
        if missing or set(sd) - set(own):
            unknown = sorted(set(sd) - set(own))
            raise CfglabError(
                f"export mapping incomplete: missing {missing[:4]}, unknown {unknown[:4]}"
            )
        for k, v in sd.items():
            own[k].copy_(v)
    return hf.eval()


def to_hf(loaded: LoadedRun) -> PreTrainedModel:
    """The run's model as a stock transformers model (abs: GPT-2, rot: GPT-NeoX), fp32, eval."""
    from cfglab.interop.extra import require

    require("transformers", what="exporting to Hugging Face")
    _check_exportable(loaded)
    return _gpt2(loaded) if loaded.config.pe == "abs" else _neox(loaded)


def _vocab(grammar: Grammar) -> Any:
    from cfglab.data.vocab import Vocab

    return Vocab(len(grammar.terminals))


def grammar_tokenizer(grammar: Grammar) -> PreTrainedTokenizerFast:
    """A fast tokenizer whose ids are cfglab's: terminals 0..T-1, then <bos>, <eos>, <mask>."""
    from cfglab.interop.extra import require

    require("tokenizers", "transformers", what="a Hugging Face tokenizer")
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    terminals = list(grammar.terminals)
    clash = sorted(set(terminals) & set(SPECIAL_TOKENS))
    if clash:
        raise CfglabError(
            f"grammar {grammar.name}: terminal(s) {', '.join(clash)} clash with the special "
            "tokens of the exported tokenizer"
        )
    bad = [t for t in terminals if not t or any(c.isspace() for c in t)]
    if bad:
        raise CfglabError(
            f"grammar {grammar.name}: terminal names with spaces cannot be words: {bad}"
        )
    vocab = {t: i for i, t in enumerate([*terminals, *SPECIAL_TOKENS])}
    bos, eos, mask = SPECIAL_TOKENS
    tok = Tokenizer(WordLevel(vocab, unk_token=mask))  # an unknown word reads as <mask>
    tok.pre_tokenizer = WhitespaceSplit()
    tok.post_processor = TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, vocab[bos])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        mask_token=mask,
        pad_token=eos,
        unk_token=mask,
        model_input_names=["input_ids", "attention_mask"],
    )


def export_run(run_dir: str | Path, out_dir: str | Path, step: int | None = None) -> Path:
    """Write OUT_DIR: config.json, model.safetensors, tokenizer files (HF's save_pretrained)."""
    from cfglab.runs import load_run

    loaded = load_run(run_dir, step=step)
    _check_exportable(loaded)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise CfglabError(f"{out}: exists and is not empty; choose a new directory")
    hf = to_hf(loaded)
    hf.config.cfglab = {"run": str(loaded.run.path), "step": loaded.step, "pe": loaded.config.pe}
    out.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(out)
    grammar_tokenizer(loaded.grammar).save_pretrained(out)
    return out
