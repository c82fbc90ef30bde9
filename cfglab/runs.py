"""The run directory as an interface between training and everything that reads a model.

    RUN_DIR/
      config.yaml          the resolved TrainConfig (what `cfglab train CONFIG.yaml` accepts)
      model_card.json      parameters, config, git commit, torch version, device
      metrics.jsonl        one JSON object per logged step: step, loss, val_loss, tokens_per_s, lr
      checkpoints/         step_00001000.pt (+ .sha256), written atomically, the last K kept
      train_strings.npy    sorted uint64 hashes of every training string (memorisation checks)

Evaluation, probes and sweeps read runs only through this module, never through train.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cfglab.errors import CfglabError

PE_NAMES = ("abs", "rel", "rot", "pos", "uni", "mlm")


class TrainConfig(BaseModel):
    """Everything that defines one training run (paper defaults where the paper gives them)."""

    model_config = ConfigDict(extra="forbid")

    grammar: str = Field(description="grammar file (.cfg); stored as an absolute path")
    pe: Literal["abs", "rel", "rot", "pos", "uni", "mlm"] = "rot"
    mlm_pe: Literal["abs", "rel"] = "abs"  # position encoding of the mlm encoder
    layers: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    dim: int = Field(64, ge=1)
    context: int = Field(128, ge=2)
    batch: int = Field(32, ge=1)
    steps: int = Field(2000, ge=1)
    lr: float = Field(3e-4, gt=0)  # peak learning rate, decayed linearly to min_lr
    min_lr: float = Field(0.0, ge=0)
    warmup: int = Field(0, ge=0)  # linear warm-up steps
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = Field(0.9, gt=0, lt=1)
    beta2: float = Field(0.98, gt=0, lt=1)
    grad_clip: float = Field(1.0, ge=0)  # 0 turns clipping off
    dropout: float = Field(0.0, ge=0, lt=1)
    noise_fraction: float = Field(0.0, ge=0, le=1)  # share of training strings corrupted
    noise_rate: float = Field(0.0, ge=0, le=1)  # per-token flip probability in those strings
    mask_prob: float = Field(0.15, gt=0, lt=1)  # mlm only: BERT masking rate
    holdout_rule: str | None = Field(
        None,
        description='a rule "LHS -> SYM ..." no training string may use (in any of its parse '
        "trees; cfglab.chart.rules)",
    )
    seed: int = 0
    threads: int = Field(0, ge=0)  # torch threads; 0 = all cores
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto: bf16 autocast on CUDA, fp32 on CPU. bf16 on a CPU with native bf16 (AVX512-BF16,
    # AMX): 2.2-2.5x fp32's tokens/s at 4 layers, 128 dims; 1.2-1.3x at 2 layers, 64 dims.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    checkpoint_every: int = Field(500, ge=1)
    keep_checkpoints: int = Field(3, ge=1)
    eval_every: int = Field(100, ge=1)
    eval_batches: int = Field(4, ge=1)
    log_every: int = Field(10, ge=1)
    chunk_strings: int = Field(512, ge=1)  # strings sampled per data chunk
    align_windows: bool = Field(
        True,
        description="every training window starts at a string's BOS; false: windows are cut "
        "anywhere in the packed stream, as the paper does",
    )

    @field_validator("holdout_rule")
    @classmethod
    def _rule_syntax(cls, v: str | None) -> str | None:
        if v is not None and "->" not in v:
            raise ValueError('write the rule as "LHS -> SYM SYM ..."')
        return v


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per bad field, with its dotted path: what a user needs to fix the file."""
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = "unknown field (not allowed)" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {path}: {msg}")
    return "\n".join(lines)


def load_train_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML training config; bad or unknown fields are refused with their path."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError) as err:
        raise CfglabError(f"{path}: cannot read: {err}") from None
    except yaml.YAMLError as err:
        raise CfglabError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise CfglabError(f"{path}: expected a mapping of fields, got {type(data).__name__}")
    data.update(overrides or {})
    return make_train_config(data, str(path))


def make_train_config(data: dict[str, Any], source: str = "config") -> TrainConfig:
    try:
        return TrainConfig(**data)
    except ValidationError as err:
        raise CfglabError(format_validation_error(err, source)) from None


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
    """Load one checkpoint, verifying its checksum; CfglabError if it is damaged."""
    import io

    import torch

    data = path.read_bytes()
    digest = path.with_name(path.name + ".sha256")
    if digest.exists() and digest.read_text().strip() != hashlib.sha256(data).hexdigest():
        raise CfglabError(f"{path}: checkpoint is corrupted (checksum mismatch)")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many kinds on a damaged file
        raise CfglabError(
            f"{path}: checkpoint is corrupted ({type(err).__name__}: {err})"
        ) from None


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
    grammar: Any  # cfglab.grammar.core.Grammar
    model: Any  # torch.nn.Module, in eval mode
    step: int


def model_config_for(config: TrainConfig, n_terminals: int):  # -> ModelConfig
    from cfglab.data.vocab import Vocab
    from cfglab.models.config import ModelConfig

    return ModelConfig(
        vocab_size=Vocab(n_terminals).size,
        context=config.context,
        n_layer=config.layers,
        n_head=config.heads,
        n_embd=config.dim,
        pe=config.pe,
        mlm_pe=config.mlm_pe,
        dropout=config.dropout,
    )


def load_run(path: str | Path, step: int | None = None, device: str = "cpu") -> LoadedRun:
    """A trained model from its run directory (the newest good checkpoint, or `step`)."""
    from cfglab.grammar.dsl import load_grammar
    from cfglab.models import build_model

    run = RunDir(Path(path))
    config = run.read_config()
    grammar = load_grammar(config.grammar)
    if step is None:
        found = latest_checkpoint(run)
        if found is None:
            raise CfglabError(f"{run.path}: no usable checkpoint")
        _, state = found
    else:
        state = load_checkpoint(run.checkpoint_dir / f"step_{step:08d}.pt")
    model = build_model(model_config_for(config, len(grammar.terminals)))
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return LoadedRun(run, config, grammar, model, int(state["step"]))


def untrained_model(config: TrainConfig, n_terminals: int, seed: int = 0):
    """A freshly initialised model of the run's architecture (the paper's GPT_rand control)."""
    import torch

    from cfglab.models import build_model

    torch.manual_seed(seed)
    return build_model(model_config_for(config, n_terminals)).eval()
