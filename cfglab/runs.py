"""The run directory as an interface between training and everything that reads a model.

    RUN_DIR/
      config.yaml          the resolved TrainConfig (what `cfglab train CONFIG.yaml` accepts)
      model_card.json      parameters, config, git commit, torch version, device
      metrics.jsonl        one JSON object per logged step: step, loss, val_loss, tokens_per_s, lr
      checkpoints/         step_00001000.pt (+ .sha256), written atomically, the last K kept:
                           the resume state (model, optimizer, stream, RNGs), read only with
                           torch.load(weights_only=True)
      model.safetensors    the final step's weights (tied tensors stored once; no pickle)
      config.json          what model.safetensors needs: the ModelConfig, the step, the grammar
      tensorboard/         event files, when the config asks for them (tensorboard: true)
      train_strings.npy    sorted uint64 hashes of every training string (memorisation checks)

Evaluation, probes and sweeps read runs only through this module, never through train.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cfglab.errors import CfglabError, format_validation_error
from cfglab.models.config import PE, MlmPE, ModelConfig, canon_places
from cfglab.yamlfile import read_mapping, validate

if TYPE_CHECKING:
    from cfglab.grammar.core import Grammar
    from cfglab.models.gpt import Transformer


class TrainConfig(BaseModel):
    """Everything that defines one training run (paper defaults where the paper gives them).

    Every field is also a `cfglab train` flag (`--field-name`), its description the flag's help.
    """

    model_config = ConfigDict(extra="forbid", use_enum_values=True, validate_default=True)

    grammar: str = Field(description="Grammar file (.cfg); stored as an absolute path.")
    pe: PE = Field(PE.ROT, description="Position encoding / attention variant.")
    mlm_pe: MlmPE = Field("abs", description="Position encoding of the mlm encoder.")
    layers: int = Field(2, ge=1, description="Transformer blocks.")
    heads: int = Field(2, ge=1, description="Attention heads per block.")
    dim: int = Field(64, ge=1, description="Residual width (head size is dim / heads).")
    context: int = Field(128, ge=2, description="Training window in tokens.")
    batch: int = Field(32, ge=1, description="Windows per optimiser step.")
    steps: int = Field(2000, ge=1, description="Optimiser steps.")
    lr: float = Field(3e-4, gt=0, description="Peak learning rate, decayed linearly to min_lr.")
    min_lr: float = Field(0.0, ge=0, description="Learning rate at the last step.")
    warmup: int = Field(0, ge=0, description="Linear warm-up steps.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay.")
    beta1: float = Field(0.9, gt=0, lt=1, description="AdamW beta1.")
    beta2: float = Field(0.98, gt=0, lt=1, description="AdamW beta2.")
    grad_clip: float = Field(1.0, ge=0, description="Gradient norm clip; 0 turns clipping off.")
    dropout: float = Field(
        0.0, ge=0, lt=1, description="Dropout on attention probabilities and residual branches."
    )
    noise_fraction: float = Field(
        0.0, ge=0, le=1, description="Share of training strings corrupted."
    )
    noise_rate: float = Field(
        0.0, ge=0, le=1, description="Per-token flip probability in the corrupted strings."
    )
    mask_prob: float = Field(0.15, gt=0, lt=1, description="mlm only: BERT masking rate.")
    holdout_rule: str | None = Field(
        None,
        description='A rule "LHS -> SYM ..." no training string may use, in any of its parse '
        'trees (cfglab.chart.rules), e.g. "N18 -> N15 N14 N13".',
    )
    seed: int = Field(0, description="Seed of the model's initialisation and the data stream.")
    threads: int = Field(0, ge=0, description="torch threads (0 = all cores).")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where to train (auto: cuda when available)."
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="auto (bf16 autocast on CUDA and on CPUs with bf16 instructions, fp32 on "
        "other CPUs), fp32 or bf16 (see 'bf16 on the CPU' in the benchmarks' RESULTS.md).",
    )
    checkpoint_every: int = Field(500, ge=1, description="Steps between checkpoints.")
    keep_checkpoints: int = Field(3, ge=1, description="Newest checkpoints kept.")
    eval_every: int = Field(100, ge=1, description="Steps between validation losses.")
    eval_batches: int = Field(4, ge=1, description="Batches per validation loss.")
    log_every: int = Field(10, ge=1, description="Steps between metrics lines.")
    chunk_strings: int = Field(512, ge=1, description="Strings sampled per data chunk.")
    align_windows: bool = Field(
        True,
        description="Start every training window at a string's BOS, as generation does "
        "(default), or cut windows anywhere in the packed stream, as the paper does.",
    )
    bias: bool = Field(True, description="Biases in Linear and LayerNorm layers (GPT-2 has them).")
    mlp_ratio: int = Field(4, ge=1, description="MLP hidden width = mlp_ratio * dim.")
    tie_weights: bool = Field(
        True, description="Share the token embedding with the output head (GPT-2 does)."
    )
    rope_base: float = Field(10000.0, gt=0, description="rot: base of the rotary frequencies.")
    rope_dim: int | None = Field(
        None,
        ge=2,
        description="rot: features of each head that rotate (partial RoPE: the first rope_dim, "
        "even, <= dim / heads); default all of them.",
    )
    canon: str = Field(
        "",
        description='Canon layers (Part 4.1) at places among "ABCD": A before attention, B on '
        'q/k/v, C before the MLP, D on the MLP\'s up projection; "" none (default).',
    )
    canon_kernel: int = Field(4, ge=1, description="Canon: taps of each causal convolution.")
    canon_residual: bool = Field(
        True, description="Canon: h + conv(h) (default, as Part 4.1) or conv(h) alone."
    )
    max_rel: int | None = Field(
        None,
        ge=1,
        description="rel: distances clipped to [-max_rel, max_rel - 1] (default: the context).",
    )
    tensorboard: bool = Field(
        False,
        description="Write TensorBoard event files (loss, val_loss, lr, tokens/s; the config "
        "as hparams) in the run directory's tensorboard folder.",
    )
    compile: bool = Field(
        False,
        description="torch.compile the model (on CPU: needs a C++ compiler, else eager with a "
        "warning; ~30 s of compiling per run, then 1.1-1.3x the demo's step); numerics differ "
        "from eager in the last bits.",
    )

    @field_validator("canon", mode="before")
    @classmethod
    def _canon_places(cls, v: Any) -> str:
        return canon_places(v)

    @field_validator("holdout_rule")
    @classmethod
    def _rule_syntax(cls, v: str | None) -> str | None:
        if v is not None and "->" not in v:
            raise ValueError('write the rule as "LHS -> SYM SYM ..."')
        return v


def load_train_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML training config, `overrides` (flags) on top; a bad or unknown field is
    refused with its file:line, or by name when a flag gave it."""
    file = read_mapping(path, "a training config is a mapping of TrainConfig fields")
    given = overrides or {}
    return validate(TrainConfig, file.data | given, file, not_from_file=frozenset(given))


def make_train_config(data: dict[str, Any], source: str = "config") -> TrainConfig:
    try:
        return TrainConfig(**data)
    except ValidationError as err:
        raise CfglabError(
            format_validation_error(err, f"{source}: invalid configuration")
        ) from None


# --- the directory -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def card_path(self) -> Path:
        return self.path / "model_card.json"

    @property
    def weights_path(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def weights_config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def train_strings_path(self) -> Path:
        return self.path / "train_strings.npy"

    def exists(self) -> bool:
        return self.config_path.exists()

    def read_config(self) -> TrainConfig:
        if not self.config_path.exists():
            raise CfglabError(f"{self.path}: not a run directory (no config.yaml)")
        return load_train_config(self.config_path)

    def write_config(self, config: TrainConfig) -> None:
        write_atomic(
            self.config_path, yaml.safe_dump(config.model_dump(), sort_keys=False).encode()
        )

    def checkpoints(self) -> list[Path]:
        """Checkpoint files, oldest first."""
        return sorted(self.checkpoint_dir.glob("step_*.pt"))

    def metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        text = self.metrics_path.read_text()
        # a writer killed mid-line leaves an unterminated last line: it was never logged
        complete = text[: text.rfind("\n") + 1]
        return [json.loads(line) for line in complete.splitlines() if line]

    def train_string_hashes(self) -> np.ndarray:
        if not self.train_strings_path.exists():
            return np.zeros(0, dtype=np.uint64)
        return np.load(self.train_strings_path)


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file and rename: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(run: RunDir, step: int, state: dict[str, Any], keep: int) -> Path:
    import io

    import torch

    run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    path = run.checkpoint_dir / f"step_{step:08d}.pt"
    write_atomic(path.with_name(path.name + ".sha256"), hashlib.sha256(data).hexdigest().encode())
    write_atomic(path, data)
    for old in run.checkpoints()[:-keep]:
        old.unlink(missing_ok=True)
        old.with_name(old.name + ".sha256").unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load one checkpoint, verifying its checksum; CfglabError if it is damaged or unsafe.

    Only tensors and plain containers are unpickled (`weights_only=True`): a checkpoint that
    would need anything more (arbitrary classes, code run on load) is refused, so a run
    directory from someone else cannot run code here."""
    import io
    import pickle

    import torch

    data = path.read_bytes()
    digest = path.with_name(path.name + ".sha256")
    if digest.exists() and digest.read_text().strip() != hashlib.sha256(data).hexdigest():
        raise CfglabError(f"{path}: checkpoint is corrupted (checksum mismatch)")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights_only" in str(err) or "Weights only" in str(err):
            raise CfglabError(
                f"{path}: refused: this checkpoint needs more than tensors and plain values to "
                "load (arbitrary Python objects could run code); cfglab loads checkpoints with "
                "torch.load(weights_only=True) only"
            ) from None
        raise CfglabError(f"{path}: checkpoint is corrupted ({err})") from None
    except Exception as err:  # torch raises many kinds on a damaged file
        raise CfglabError(
            f"{path}: checkpoint is corrupted ({type(err).__name__}: {err})"
        ) from None


def checkpoint_step(path: Path) -> int:
    """The step in a checkpoint's file name (step_00001000.pt -> 1000)."""
    return int(path.stem.split("_")[1])


def save_weights(run: RunDir, model: Any, mcfg: Any, step: int, grammar: Any) -> Path:
    """model.safetensors + config.json: the weights of one step, readable without pickle.

    `safetensors.torch.save_model` stores tensors shared by several names (the tied head and
    token embedding, rel's shared table) once and `load_model` restores the sharing."""
    from safetensors.torch import save_model

    card = {
        "format": "cfglab",
        "model": mcfg.to_dict(),
        "step": step,
        "grammar": {"name": grammar.name, "terminals": list(grammar.terminals)},
    }
    tmp = run.weights_path.with_name("model.tmp.safetensors")
    save_model(model, str(tmp), metadata={"format": "pt", "step": str(step)})
    os.replace(tmp, run.weights_path)
    write_atomic(run.weights_config_path, json.dumps(card, indent=2).encode())
    return run.weights_path


def read_weights_config(run: RunDir) -> dict[str, Any]:
    path = run.weights_config_path
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CfglabError(f"{path}: cannot read the weights' config ({err})") from None
    if not isinstance(card, dict) or card.get("format") != "cfglab" or "model" not in card:
        raise CfglabError(f"{path}: not a cfglab weights config (written by cfglab train)")
    return card


def load_weights(run: RunDir, model: Any) -> int:
    """Fill `model` from model.safetensors; returns the step the weights are from."""
    from safetensors.torch import load_model

    card = read_weights_config(run)
    try:
        missing, unexpected = load_model(model, str(run.weights_path), strict=False)
    except Exception as err:  # safetensors raises its own kinds on a damaged file
        raise CfglabError(
            f"{run.weights_path}: cannot load ({type(err).__name__}: {err})"
        ) from None
    if missing or unexpected:
        raise CfglabError(
            f"{run.weights_path}: does not match the run's model "
            f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    return int(card["step"])


def latest_checkpoint(run: RunDir) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads; damaged ones are reported and skipped."""
    for path in reversed(run.checkpoints()):
        try:
            return path, load_checkpoint(path)
        except CfglabError as err:
            warnings.warn(f"{err}; falling back to the previous checkpoint", stacklevel=2)
    return None


# --- reading a trained model -------------------------------------------------------------------


@dataclass
class LoadedRun:
    run: RunDir
    config: TrainConfig
    grammar: Grammar
    model: Transformer  # in eval mode
    step: int

    def encode(self, string: str | Sequence[str] | Sequence[int], eos: bool = False) -> Any:
        """One string as the model's input: a (1, 1 + n) LongTensor on the model's device, BOS
        and then the string's terminal ids, exactly as a training window starting at that
        string feeds it (`eos`: EOS after it too, as the masked LM's evaluation feeds it).

        `string` is terminal names ("3 1 2", split on whitespace, or ["3", "1", "2"]) or
        terminal ids (0..T-1, e.g. a row of `sample(...).strings()`); BOS is added here, so it
        is not given. Without BOS the model reads the first terminal where training always put
        BOS, and its predictions there are not the ones it learned."""
        import torch

        ids = model_input(self.grammar, string, eos)
        if len(ids) > self.config.context:
            raise CfglabError(
                f"this string is {len(ids)} tokens with BOS{' and EOS' if eos else ''}, longer "
                f"than the model's context of {self.config.context}"
            )
        device = next(self.model.parameters()).device
        return torch.as_tensor(ids, dtype=torch.long, device=device)[None]


def model_input(
    grammar: Grammar, string: str | Sequence[str] | Sequence[int], eos: bool = False
) -> np.ndarray:
    """BOS, the string's terminal ids (from names or ids), and EOS when `eos`: int64, as
    cfglab.data.corpus.pack lays a string out in the training stream."""
    from cfglab.data.vocab import Vocab

    vocab = Vocab(len(grammar.terminals))
    names: list[str | int] = [*string.split()] if isinstance(string, str) else [*string]
    if any(isinstance(t, str) for t in names):
        known = set(grammar.terminals)
        unknown = [t for t in names if t not in known]
        if unknown:
            raise CfglabError(
                f"{unknown[0]!r} is not a terminal of grammar {grammar.name} (its terminals: "
                f"{' '.join(grammar.terminals)})"
            )
        ids = [int(i) for i in grammar.encode([str(t) for t in names])]
    else:
        ids = [int(i) for i in names if not isinstance(i, str)]  # numpy ints, tensor items
        bad = [i for i in ids if not 0 <= i < vocab.n_terminals]
        if bad:
            raise CfglabError(
                f"token id {bad[0]} is not a terminal id of grammar {grammar.name} "
                f"(0..{vocab.n_terminals - 1}); BOS and EOS are added by encode, not given"
            )
    return np.array([vocab.bos, *ids, *([vocab.eos] if eos else [])], dtype=np.int64)


def model_config_for(config: TrainConfig, n_terminals: int) -> ModelConfig:
    from cfglab.data.vocab import Vocab

    return ModelConfig(
        vocab_size=Vocab(n_terminals).size,
        context=config.context,
        n_layer=config.layers,
        n_head=config.heads,
        n_embd=config.dim,
        pe=config.pe,
        mlm_pe=config.mlm_pe,
        dropout=config.dropout,
        bias=config.bias,
        mlp_ratio=config.mlp_ratio,
        tie_weights=config.tie_weights,
        rope_base=config.rope_base,
        rope_dim=config.rope_dim,
        max_rel=config.max_rel,
        canon=config.canon,
        canon_kernel=config.canon_kernel,
        canon_residual=config.canon_residual,
        bos_id=Vocab(n_terminals).bos,
    )


def load_run(path: str | Path, step: int | None = None, device: str = "cpu") -> LoadedRun:
    """A trained model from its run directory: model.safetensors when it holds the newest (or
    the asked-for) step, otherwise the newest good checkpoint (or `step`)."""
    from cfglab.grammar.dsl import load_grammar
    from cfglab.models import build_model

    run = RunDir(Path(path))
    config = run.read_config()
    grammar = load_grammar(config.grammar)
    model = build_model(model_config_for(config, len(grammar.terminals)))
    if _weights_hold(run, step):
        loaded_step = load_weights(run, model)
    else:
        if step is None:
            found = latest_checkpoint(run)
            if found is None:
                raise CfglabError(f"{run.path}: no usable checkpoint")
            _, state = found
        else:
            ckpt = run.checkpoint_dir / f"step_{step:08d}.pt"
            if not ckpt.exists():
                have = [checkpoint_step(p) for p in run.checkpoints()]
                raise CfglabError(f"{ckpt}: no such checkpoint (steps kept: {have or 'none'})")
            state = load_checkpoint(ckpt)
        model.load_state_dict(state["model"])
        loaded_step = int(state["step"])
    model.to(device).eval()
    return LoadedRun(run, config, grammar, model, loaded_step)


def _weights_hold(run: RunDir, step: int | None) -> bool:
    """Whether model.safetensors is the step to load (a resumed, longer run makes it stale)."""
    if not (run.weights_path.exists() and run.weights_config_path.exists()):
        return False
    saved = int(read_weights_config(run)["step"])
    if step is not None:
        return saved == step
    return all(checkpoint_step(p) <= saved for p in run.checkpoints())


def untrained_model(config: TrainConfig, n_terminals: int, seed: int = 0) -> Transformer:
    """A freshly initialised model of the run's architecture (the paper's GPT_rand control)."""
    import torch

    from cfglab.models import build_model

    torch.manual_seed(seed)
    return build_model(model_config_for(config, n_terminals)).eval()
