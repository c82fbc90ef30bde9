"""Any Hugging Face causal LM behind cfglab's decoder interface, for the one evaluation path.

`HFDecoder` gives an HF model the three calls evaluate/ uses on a cfglab GPT
(`model(idx) -> (logits, None)`, `init_cache`, `step`), in cfglab's token ids: inputs are mapped
to the model's ids through a token map, and the model's next-token law is read back over
cfglab's vocabulary (terminals, BOS, EOS, MASK). Mass the model puts on tokens outside the
grammar is not dropped: it is summed into the MASK column, which generation counts as a stray
special token and the KL leaves out (so an outside model is charged for it, as a cfglab model is
for mass on BOS/MASK). For an exported cfglab model the map is the identity and the logits are
the model's own.

The token map is read from the tokenizer: each terminal name and the BOS/EOS tokens must be single
entries of its vocabulary. `--token-map FILE` (YAML or JSON: terminal name, `<bos>` or `<eos>`
-> the model's token string or id) overrides or supplies entries.
"""

from __future__ import annotations

import inspect
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from cfglab.data.vocab import Vocab
from cfglab.errors import CfglabError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from cfglab.evaluate.context import EvalContext
    from cfglab.grammar.core import Grammar

BOS_KEY, EOS_KEY = "<bos>", "<eos>"


@dataclass
class ExternalConfig:
    """What evaluate/ reads from a run's TrainConfig, for a model trained elsewhere: no
    held-out rule and no training noise are known (mode_switch's noise fields become null)."""

    pe: str = "hf"
    mlm_pe: str = "abs"
    context: int | None = None
    holdout_rule: str | None = None
    noise_fraction: float = 0.0
    noise_rate: float = 0.0


@dataclass
class HFCache:
    """An HF KV cache plus what cfglab's generation loop asks of a cache."""

    past: Any  # transformers.DynamicCache
    capacity: int

    def select(self, rows: Tensor) -> HFCache:
        """Keep some batch rows only (a bool mask or indices)."""
        idx = rows.nonzero()[:, 0] if rows.dtype == torch.bool else rows
        self.past.batch_select_indices(idx)
        return self


class HFDecoder(torch.nn.Module):
    """An HF causal LM that reads and writes cfglab token ids (see the module docstring)."""

    to_model: Tensor  # (T + 2,) the model's id of each terminal, BOS, EOS
    feed: Tensor  # (T + 3,) the model's input id of every cfglab id, MASK included
    others: Tensor  # the model's ids outside the grammar: their mass goes to MASK

    def __init__(self, hf: PreTrainedModel, ids: list[int], limit: int | None) -> None:
        super().__init__()
        self.hf = hf.eval()
        n_model = hf.get_output_embeddings().weight.size(0)
        self.register_buffer("to_model", torch.tensor(ids, dtype=torch.long), persistent=False)
        # MASK stands for every token outside the grammar, so it has no model id of its own. A
        # row stops on it (a stray), but until the loop compacts its batch the stopped row is
        # still fed what it drew; EOS is as good as any id there, since nothing reads that row.
        self.register_buffer("feed", torch.tensor([*ids, ids[-1]]), persistent=False)
        others = torch.ones(n_model, dtype=torch.bool)
        others[self.to_model] = False
        self.register_buffer("others", others.nonzero()[:, 0], persistent=False)
        self.limit = limit  # learned absolute positions end here; None: rotary/relative
        # transformers 5 renames `past_key_values` to `cache` (the old name warns until 5.40)
        params = inspect.signature(hf.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"

    def _read(self, logits: Tensor) -> Tensor:
        """(B, T, V_model) -> (B, T, V_cfglab): terminals, BOS, EOS, then the rest on MASK."""
        logits = logits.float()
        mine = logits[..., self.to_model]
        if self.others.numel():
            rest = logits[..., self.others].logsumexp(dim=-1, keepdim=True)
        else:
            rest = logits.new_full((*logits.shape[:-1], 1), -math.inf)
        return torch.cat([mine, rest], dim=-1)

    def forward(self, idx: Tensor) -> tuple[Tensor, None]:
        return self._read(self.hf(input_ids=self.feed[idx], use_cache=False).logits), None

    def init_cache(self, batch: int, capacity: int | None = None) -> HFCache:
        from transformers import DynamicCache

        capacity = capacity or self.limit or 1 << 30
        if self.limit is not None and capacity > self.limit:
            raise CfglabError(
                f"the model's position embeddings cover {self.limit} tokens; cannot decode "
                f"{capacity}"
            )
        return HFCache(DynamicCache(), capacity)

    def step(self, idx_new: Tensor, cache: HFCache) -> Tensor:
        kw = {self.cache_arg: cache.past}
        out = self.hf(input_ids=self.feed[idx_new], use_cache=True, **kw)  # fills cache.past
        return self._read(out.logits)


def read_token_map(path: str | Path, grammar: Grammar) -> dict[str, str | int]:
    """A YAML/JSON mapping: terminal name, <bos> or <eos> -> the model's token (string or id)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise CfglabError(f"{path}: cannot read the token map: {err}") from None
    except yaml.YAMLError as err:
        raise CfglabError(f"{path}: token map is not valid YAML/JSON: {err}") from None
    if not isinstance(data, dict):
        raise CfglabError(f"{path}: the token map must be a mapping (terminal: token)")
    known = {*grammar.terminals, BOS_KEY, EOS_KEY}
    bad = sorted(str(k) for k in data if k not in known)
    if bad:
        raise CfglabError(
            f"{path}: unknown key(s) {', '.join(bad)}: keys are the grammar's terminals, "
            f"{BOS_KEY} and {EOS_KEY}"
        )
    for k, v in data.items():
        if not isinstance(v, (str, int)) or isinstance(v, bool):
            raise CfglabError(f"{path}: {k}: expected a token string or id, got {v!r}")
    return {str(k): v for k, v in data.items()}


def token_ids(
    tok: PreTrainedTokenizerBase, grammar: Grammar, token_map: dict[str, str | int] | None
) -> list[int]:
    """The model's id for each cfglab id 0..T+1 (terminals, BOS, EOS); MASK is the rest."""
    vocab = tok.get_vocab()
    n_model = len(vocab)
    wanted: dict[str, str | int | None] = {t: t for t in grammar.terminals}
    wanted[BOS_KEY], wanted[EOS_KEY] = tok.bos_token, tok.eos_token
    wanted.update(token_map or {})
    ids, missing = [], []
    for key in [*grammar.terminals, BOS_KEY, EOS_KEY]:
        v = wanted[key]
        if isinstance(v, int) and 0 <= v < n_model:
            ids.append(v)
        elif isinstance(v, str) and v in vocab:
            ids.append(vocab[v])
        else:
            missing.append(key)
    if missing:
        raise CfglabError(
            f"the tokenizer has no single token for {', '.join(missing)} (grammar "
            f"{grammar.name} needs every terminal, and BOS/EOS); give a --token-map FILE "
            "mapping them to the model's tokens"
        )
    if len(set(ids)) != len(ids):
        raise CfglabError("the token map sends two grammar symbols to the same model token")
    return ids


def position_limit(config: Any) -> int | None:
    """Tokens the model can take: learned absolute positions (GPT-2's n_positions) end there;
    rotary and relative models run past their nominal length, as cfglab's rot does."""
    n = getattr(config, "n_positions", None)
    return int(n) if n else None


def open_hf(
    model_dir: str | Path,
    grammar_path: str | Path,
    token_map: str | Path | None = None,
    threads: int = 0,
    device: str = "cpu",
) -> EvalContext:
    """An EvalContext around a local HF model directory and a grammar (no network)."""
    from cfglab.interop.extra import require

    require("transformers", what="evaluate --hf")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from cfglab.evaluate.context import EvalContext, resolve_device, set_threads
    from cfglab.evaluate.judge import Judge
    from cfglab.grammar.dsl import load_grammar

    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise CfglabError(f"{path}: not a Hugging Face model directory (no config.json)")
    grammar = load_grammar(grammar_path)
    set_threads(threads)
    device = resolve_device(device)
    hf_logging.disable_progress_bar()
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        hf = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    except Exception as err:  # a damaged directory raises whatever its loader does
        raise CfglabError(
            f"{path}: cannot load as a causal LM ({type(err).__name__}: {err})"
        ) from None
    mapping = read_token_map(token_map, grammar) if token_map else None
    ids = token_ids(tok, grammar, mapping)
    limit = position_limit(hf.config)
    model = HFDecoder(hf.float(), ids, limit).to(device)
    assert len(ids) == Vocab(len(grammar.terminals)).mask
    return EvalContext(
        path.resolve(),
        ExternalConfig(context=limit),
        grammar,
        model,
        0,
        Judge(grammar),
        device,
        max_tokens=limit,
    )


HF_SECTIONS = ("accuracy", "diversity", "kl", "robustness")  # no training data, no encoder


def evaluate_hf(
    model_dir: str | Path,
    grammar: str | Path,
    options: Any = None,
    progress: Any = None,
    token_map: str | Path | None = None,
) -> dict[str, Any]:
    """`evaluate_run` on an outside HF causal LM: the same sections, seeds and code, writing
    MODEL_DIR/eval/ unless told not. Memorisation needs the training strings and `masked` an
    encoder, so neither runs here."""
    import json

    from cfglab.evaluate.run import evaluate_run, make_options
    from cfglab.runs import write_atomic

    opts = make_options(options)
    if "sections" not in opts.model_fields_set:
        opts.sections = list(HF_SECTIONS)
    unsupported = sorted(set(opts.sections) - set(HF_SECTIONS))
    if unsupported:
        raise CfglabError(
            f"section(s) {', '.join(unsupported)} need a cfglab run (its training strings, or an "
            f"encoder); an outside model gets {', '.join(HF_SECTIONS)}"
        )
    ctx = open_hf(model_dir, grammar, token_map, opts.threads, opts.device)
    result = evaluate_run(ctx.run_dir, opts, progress, context=ctx)
    result["hf"] = {
        "model_dir": str(ctx.run_dir),
        "architecture": type(ctx.model.hf).__name__,
        "grammar_file": str(Path(grammar).resolve()),
        "token_map": str(token_map) if token_map else None,
        "token_ids": ctx.model.to_model.tolist(),
        "position_limit": ctx.max_tokens,
    }
    switch = (result.get("robustness") or {}).get("mode_switch")
    if switch:  # the training noise of an outside model is unknown
        for key in (
            "train_noise_fraction",
            "train_noise_rate",
            "expected_flips_in_a_corrupted_string",
        ):
            switch[key] = None
    if opts.write:  # evaluate_run wrote eval/ already: add what is said above to eval.json
        write_atomic(ctx.run_dir / "eval" / "eval.json", json.dumps(result, indent=2).encode())
    return result
