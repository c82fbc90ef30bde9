"""The Ray Tune trainable: one trial = one `cfglab.train.train` run, reported to Tune.

Training knows nothing of Ray; this wrapper listens through train's callback and turns each
held-out evaluation into `tune.report(metrics)` and each checkpoint into
`tune.report(metrics, checkpoint=...)`. On a retry or a resumed sweep Tune hands back the last
reported checkpoint (`tune.get_checkpoint()`); the run directory is refilled from it when it is
missing or older (another node, a lost disk) and training continues exactly where it stopped.

Fault injection for tests and drills: CFGLAB_CRASH_AT_STEP=k in the driver's environment makes
every trial raise once, at its first report at step >= k (a marker file, SWEEP_DIR/crashed/NAME,
makes the retry pass).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cfglab.errors import CfglabError
from cfglab.runs import RunDir
from cfglab.sweep.layout import SweepDir

CRASH_ENV = "CFGLAB_CRASH_AT_STEP"
CRASH_MARKERS = "crashed"  # SWEEP_DIR/crashed/NAME: this trial's injected crash happened
# What a Tune checkpoint carries: enough to rebuild the run directory anywhere.
# (model.safetensors + config.json exist from the final step on: the last checkpoint has them)
_RUN_FILES = (
    "config.yaml",
    "model_card.json",
    "metrics.jsonl",
    "train_strings.npy",
    "model.safetensors",
    "config.json",
)


class InjectedCrash(RuntimeError):
    """The crash CFGLAB_CRASH_AT_STEP asked for."""


def crash_step_from_env() -> int | None:
    value = os.environ.get(CRASH_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise CfglabError(f"{CRASH_ENV}={value!r}: give a step number")
    return int(value)


def train_trial(config: dict[str, Any], context: dict[str, Any]) -> None:
    """Tune's function trainable. `config` = {"run": NAME}; `context` carries the whole plan
    (trials by name, the sweep directory, grammar texts, the crash step) via with_parameters."""
    from ray import tune

    from cfglab.runs import TrainConfig
    from cfglab.train import train

    name = config["run"]
    sweep = SweepDir(Path(context["sweep_dir"]))
    trial = context["trials"][name]
    _ensure_grammar(
        Path(trial["train"]["grammar"]), context["grammar_texts"][trial["coordinates"]["grammar"]]
    )
    run_dir = sweep.run(name)
    resume, from_step = prepare_run_dir(run_dir, tune.get_checkpoint())
    sweep.log_start(name, from_step)
    reporter = Reporter(run_dir, context.get("crash_at_step"), sweep.path / CRASH_MARKERS / name)
    train(TrainConfig(**trial["train"]), run_dir, resume=resume, quiet=True, callback=reporter)


def _ensure_grammar(path: Path, text: str) -> None:
    """On a node without the shared sweep directory, write the grammar the run trains on."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _step_of(path: Path) -> int:
    m = re.search(r"step_(\d+)\.pt$", path.name)
    return int(m.group(1)) if m else -1


def prepare_run_dir(run_dir: Path, checkpoint: Any) -> tuple[bool, int]:
    """Make `run_dir` ready to train: (resume?, the step training will start from)."""
    run = RunDir(run_dir)
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            restore_from(Path(d), run)
    if run.exists() and run.checkpoints():
        return True, _step_of(run.checkpoints()[-1])
    if run_dir.exists():  # started, never checkpointed: start clean, no stale metrics
        shutil.rmtree(run_dir)
    return False, 0


def restore_from(source: Path, run: RunDir) -> None:
    """Refill the run directory from a Tune checkpoint when it holds a newer step."""
    saved = sorted((source / "checkpoints").glob("step_*.pt"))
    if not saved:
        return
    have = run.checkpoints() if run.exists() else []
    if have and _step_of(have[-1]) >= _step_of(saved[-1]):
        return
    run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    for name in _RUN_FILES:
        if (source / name).exists():
            shutil.copy2(source / name, run.path / name)
    for f in (source / "checkpoints").iterdir():
        shutil.copy2(f, run.checkpoint_dir / f.name)


class Reporter:
    """train()'s callback: every event to Tune, checkpoints with their run files."""

    def __init__(
        self, run_dir: Path, crash_at_step: int | None = None, crash_marker: Path | None = None
    ) -> None:
        self.run_dir = run_dir
        self.crash_at_step = crash_at_step
        self.crash_marker = crash_marker or run_dir.parent / f".{run_dir.name}.crashed"

    def __call__(self, event: dict[str, Any]) -> None:
        from ray import tune

        metrics: dict[str, Any] = {k: event[k] for k in ("step", "loss", "val_loss") if k in event}
        metrics["done"] = bool(event["done"])
        if "checkpoint" in event:
            with tempfile.TemporaryDirectory(prefix="cfglab-ckpt-") as staging:
                self._stage(Path(event["checkpoint"]), Path(staging))
                # report copies the directory into the sweep's storage before it returns
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(staging))
        else:
            tune.report(metrics)
        self._maybe_crash(event["step"])

    def _stage(self, checkpoint: Path, staging: Path) -> None:
        (staging / "checkpoints").mkdir()
        for name in _RUN_FILES:
            if (self.run_dir / name).exists():
                _link_or_copy(self.run_dir / name, staging / name)
        for f in (checkpoint, checkpoint.with_name(checkpoint.name + ".sha256")):
            if f.exists():
                _link_or_copy(f, staging / "checkpoints" / f.name)
        (staging / "cfglab_checkpoint.json").write_text(
            json.dumps({"step": _step_of(checkpoint), "run_dir": str(self.run_dir)})
        )

    def _maybe_crash(self, step: int) -> None:
        marker = self.crash_marker  # outside the run directory: a fresh restart may delete that
        if self.crash_at_step is not None and step >= self.crash_at_step and not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(str(step))
            raise InjectedCrash(f"{CRASH_ENV}={self.crash_at_step}: crashing once at step {step}")


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard links cost nothing, and are safe: training waits inside its callback while Tune
    copies the staged files, and the staging directory (links only) is deleted after."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
