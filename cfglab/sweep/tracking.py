"""Experiment trackers through Ray Tune's own logger callbacks (the sweep file's `tracking:`).

    tracking:
      tensorboard: true                       # TBXLoggerCallback (Tune's default logger)
      mlflow: {tracking_uri: mlruns}          # ray.air.integrations.mlflow.MLflowLoggerCallback
      wandb: {project: cfg, mode: offline}    # ray.air.integrations.wandb.WandbLoggerCallback
                                              # (files in SWEEP_DIR/wandb)

Tune's config of a trial holds its coordinates (grammar, size, pe, noise, seed) and its resolved
training config (`train/...`), so every tracker records them as parameters; TensorBoard gets
them as hparams (`TBXConfigLogger`: Tune's own TBX logger writes only the search variables,
here just the run's name). Training reports step, loss and val_loss.

Evaluations run as Ray tasks after their trial ends (cfglab.sweep.tune.TaskPool); when one lands,
its summary (`evaluate/cut0_accuracy`, `evaluate/kl`, ...) goes to the same trackers, into the
trial's own run, through the loggers' `log_trial_result`. `Trackers` bundles the loggers into one
Tune callback that registers itself when Tune sets it up, so the driver finds the live copy
(Tune pickles callbacks into its experiment state and restores copies on --resume).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray import tune
from ray.tune.logger import TBXLoggerCallback

if TYPE_CHECKING:
    from cfglab.sweep.spec import LoadedSweep, TrackingSection

# The live Trackers of each sweep this process drives, by sweep directory.
_LIVE: dict[str, Trackers] = {}

_HOOKS = (
    "on_step_begin",
    "on_step_end",
    "on_trial_start",
    "on_trial_restore",
    "on_trial_save",
    "on_trial_result",
    "on_trial_complete",
    "on_trial_recover",
    "on_trial_error",
    "on_checkpoint",
    "on_experiment_end",
)


class Trackers(tune.Callback):
    """Tune's logger callbacks as one callback, plus evaluation summaries when they land."""

    def __init__(self, key: str, loggers: list[Any]) -> None:
        self.key, self.loggers = key, loggers
        self.logged: dict[str, int] = {}  # trial name -> evaluation results sent

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        _LIVE[self.key] = self
        for logger in self.loggers:
            logger.setup(stop, num_samples, total_num_samples, **info)

    def log_evaluation(self, trial: Any, kind: str, result: dict[str, Any]) -> dict[str, float]:
        """Send one evaluation's summary into the trial's run of every tracker."""
        metrics = summary_metrics(kind, result)
        if not metrics:
            return metrics
        name = trial.config["run"]
        self.logged[name] = self.logged.get(name, 0) + 1
        iteration = int((trial.last_result or {}).get("training_iteration", 0)) + self.logged[name]
        record = {**metrics, "training_iteration": iteration, "trial_id": trial.trial_id}
        for logger in self.loggers:
            logger.log_trial_result(iteration, trial, record)
            logger.log_trial_end(trial)  # the trial had ended: close what logging reopened
        return metrics

    def close(self, trials: list[Any]) -> None:
        """After the last evaluation: let the loggers flush (W&B waits for its uploads)."""
        for logger in self.loggers:
            logger.on_experiment_end(trials=trials)


def _delegate(name: str) -> Any:
    def hook(self: Trackers, *args: Any, **kwargs: Any) -> None:
        for logger in self.loggers:
            getattr(logger, name)(*args, **kwargs)

    hook.__name__ = name
    return hook


for _name in _HOOKS:
    setattr(Trackers, _name, _delegate(_name))


class TBXConfigLogger(TBXLoggerCallback):
    """Tune's TensorBoard logger with the trial's whole config as hparams."""

    def _try_log_hparams(self, trial: Any, result: dict[str, Any]) -> None:
        from ray._private.dict import flatten_dict
        from tensorboardX.summary import hparams

        flat = flatten_dict(dict(trial.config), delimiter="/")
        params = {k: v for k, v in flat.items() if isinstance(v, (str, bool, int, float))}
        metrics = {
            k: v
            for k, v in flatten_dict(dict(result), delimiter="/").items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        }
        writer = self._trial_writer[trial].file_writer
        for summary in hparams(hparam_dict=params, metric_dict=metrics):
            writer.add_summary(summary)


def live(key: str) -> Trackers | None:
    return _LIVE.get(key)


def forget(key: str) -> None:
    _LIVE.pop(key, None)


def callbacks_for(loaded: LoadedSweep, key: str) -> list[Any]:
    """Tune callbacks for the sweep's `tracking:` section (Tune's JSON and CSV loggers kept)."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    tracking = loaded.spec.tracking
    # Tune adds its default loggers (CSV, JSON, TBX) unless told not to; they are listed here
    # instead, so TensorBoard can be switched off and joined to the evaluation summaries.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    loggers: list[Any] = [TBXConfigLogger()] if tracking.tensorboard else []
    loggers += _outside_trackers(tracking, loaded, Path(key))
    return [JsonLoggerCallback(), CSVLoggerCallback(), Trackers(key, loggers)]


def _outside_trackers(tracking: TrackingSection, loaded: LoadedSweep, sweep_dir: Path) -> list[Any]:
    out: list[Any] = []
    if tracking.mlflow is not None:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        m = tracking.mlflow
        out.append(
            MLflowLoggerCallback(
                tracking_uri=tracking_uri(m.tracking_uri, loaded.path.parent),
                experiment_name=m.experiment_name or loaded.name,
                tags={"sweep": loaded.name, **m.tags},
            )
        )
    if tracking.wandb is not None:
        from ray.air.integrations.wandb import WandbLoggerCallback

        w = tracking.wandb
        if w.mode != "online":  # Ray asks for an API key unless W&B's own variable says offline
            os.environ["WANDB_MODE"] = w.mode
        out.append(  # W&B's files (offline runs for `wandb sync`) go to SWEEP_DIR/wandb
            WandbLoggerCallback(
                project=w.project, group=w.group or loaded.name, mode=w.mode, dir=str(sweep_dir)
            )
        )
    return out


def tracking_uri(value: str, base: Path) -> str:
    """A URI as given; a bare path made absolute against the sweep file's directory (trials and
    the driver may run in other working directories). A directory is MLflow's file store, which
    MLflow 3 keeps only behind MLFLOW_ALLOW_FILE_STORE (set here, for this process)."""
    if "://" in value and not value.startswith("file:"):
        return value
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    if value.startswith("file:"):
        return value
    return (base / Path(value).expanduser()).resolve().as_uri()


# --- evaluation summaries ----------------------------------------------------------------------

_SKIP = {"n", "k", "seed", "seconds", "options", "counts", "ci95", "by_position", "step"}


def summary_metrics(kind: str, result: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of one task's result, as `KIND/name` metrics."""
    inner = result.get("result", result)
    pairs = _evaluate_summary(inner) if kind == "evaluate" else dict(_numbers(inner, "", 0))
    return {
        f"{kind}/{k}": float(v)
        for k, v in list(pairs.items())[:64]
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def _evaluate_summary(r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cut, acc in (r.get("accuracy") or {}).items():
        out[f"{cut}_accuracy"] = acc["accuracy"]["rate"]
        out[f"{cut}_ended_with_eos"] = acc["ended_with_eos"]["rate"]
    if r.get("kl"):
        out["kl"] = r["kl"]["mean"]
        if (official := (r["kl"].get("official") or {}).get("mean")) is not None:
            out["kl_official"] = official
    div = r.get("diversity") or {}
    if div.get("entropy", {}).get("n"):
        out["entropy_gap"] = div["entropy"]["gap"]
    if div.get("all", {}).get("n"):
        out["distinct_fraction"] = div["all"]["distinct"] / div["all"]["n"]
    novelty = (r.get("memorisation") or {}).get("novelty", {}).get("in_training")
    if novelty:
        out["in_training"] = novelty["rate"]
    if r.get("masked"):
        out["masked_accuracy"] = r["masked"]["accuracy"]["rate"]
    return out


def _numbers(value: Any, prefix: str, depth: int) -> Iterator[tuple[str, float]]:
    """Numeric leaves of nested dicts (no lists), up to four levels down."""
    if not isinstance(value, dict) or depth > 4:
        return
    for key, v in value.items():
        if key in _SKIP:
            continue
        path = f"{prefix}{key}"
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            yield path, v
        elif isinstance(v, dict):
            yield from _numbers(v, path + "/", depth + 1)
