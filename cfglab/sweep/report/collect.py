"""Rows of a sweep's report, one per trial, from its files alone (no Ray), and the headline
figures read off a row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cfglab.runs import RunDir
from cfglab.sweep.layout import SweepDir

COORDINATES = (
    "run",
    "grammar",
    "pe",
    "canon",
    "size",
    "layers",
    "heads",
    "dim",
    "noise_fraction",
    "noise_rate",
    "align_windows",
    "holdout_rule",
    "seed",
)
TRAINING = (
    "status",
    "step",
    "steps",
    "params",
    "tokens",
    "train_minutes",
    "attempts",
    "final_loss",
    "final_val_loss",
    "best_val_loss",
    "device",
)
_MAX_LIST = 16  # longer lists (curves by position, per-string values) stay out of the CSV


# --- collecting rows ---------------------------------------------------------------------------


def _last(records: list[dict[str, Any]], key: str) -> Any:
    for r in reversed(records):
        if key in r:
            return r[key]
    return None


def _train_seconds(sweep: SweepDir, name: str) -> float | None:
    """Tune's own clock for the trial (time_total_s of its last result), if it kept one."""
    result = sweep.tune_dir / name / "result.json"
    if not result.exists():
        return None
    lines = [x for x in result.read_text().splitlines() if x.strip()]
    try:
        return float(json.loads(lines[-1]).get("time_total_s")) if lines else None
    except (ValueError, TypeError):
        return None


def _training(
    sweep: SweepDir, name: str, train: dict[str, Any], starts: dict[str, int]
) -> dict[str, Any]:
    run = RunDir(sweep.run(name))
    metrics = run.metrics()
    card = json.loads(run.card_path.read_text()) if run.card_path.exists() else {}
    step = metrics[-1]["step"] if metrics else 0
    curve = [(m["step"], m["val_loss"]) for m in metrics if "val_loss" in m]
    vals = [v for _, v in curve]
    seconds = _train_seconds(sweep, name)
    status = "done" if step >= train["steps"] else ("partial" if metrics else "not started")
    return {
        "status": status,
        "step": step,
        "steps": train["steps"],
        "params": card.get("parameters"),
        "device": card.get("device"),
        "tokens": step * train["batch"] * train["context"],
        "train_minutes": round(seconds / 60, 2) if seconds is not None else None,
        "attempts": starts.get(name, 0),
        "final_loss": _last(metrics, "loss"),
        "final_val_loss": vals[-1] if vals else None,
        "best_val_loss": min(vals) if vals else None,
        "_curve": curve,
    }


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and short lists to dotted scalar columns (`evaluate.kl.mean`)."""
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(value, list):
        if len(value) <= _MAX_LIST and all(not isinstance(v, list) for v in value):
            for i, v in enumerate(value):
                out.update(flatten(v, f"{prefix}.{i}"))
    elif value is None or isinstance(value, (bool, int, float, str)):
        out[prefix] = value
    return out


def collect(sweep_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the sweep's spec record, one row per trial with coordinates, training and task results).
    Each row also keeps the raw task results under "_results" for the plots."""
    sweep = SweepDir(Path(sweep_dir).resolve())
    spec = sweep.read_spec()
    kinds = _task_kinds(spec["spec"])
    starts: dict[str, int] = {}
    for s in sweep.starts():
        starts[s.run] = starts.get(s.run, 0) + 1
    rows = []
    for trial in sweep.read_plan():
        row: dict[str, Any] = {"run": trial.name, **trial.coordinates}
        row.update(_training(sweep, trial.name, trial.train, starts))
        results = {}
        for kind in kinds:
            record = sweep.read_result(trial.name, kind)
            if record is not None:
                results[kind] = record.get("result", {})
                row.update(flatten(results[kind], kind))
        row["_results"] = results
        row["_train"] = trial.train
        rows.append(row)
    return spec, rows


def _task_kinds(spec: dict[str, Any]) -> list[str]:
    return [
        k
        for k in ("evaluate", "robustness", "probes", "attention", "patch", "embedding")
        if spec.get(k, {}).get("enabled")
    ]


# --- headline figures --------------------------------------------------------------------------


def accuracy(row: dict[str, Any], cut: str = "cut0") -> dict[str, Any] | None:
    """{"k", "n", "rate", "ci95"} of a cut ("cut0", or "cutK" for the other one)."""
    acc = row["_results"].get("evaluate", {}).get("accuracy") or {}
    if cut != "cut0":
        cut = next((c for c in acc if c != "cut0"), cut)
    entry = acc.get(cut)
    return entry.get("accuracy") if entry else None


def cut_name(rows: list[dict[str, Any]]) -> str | None:
    for row in rows:
        acc = row["_results"].get("evaluate", {}).get("accuracy") or {}
        other = [c for c in acc if c != "cut0"]
        if other:
            return other[0]
    return None


def robustness_rows(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Flat (rate, temperature, repaired, corrupted_valid, cut) records of a run."""
    out = []
    by_rate = row["_results"].get("robustness", {}).get("by_rate", {})
    for rate, rep in by_rate.items():
        for t in rep.get("by_temperature", []):
            out.append(
                {
                    "rate": float(rate),
                    "temperature": t.get("temperature"),
                    "repaired": t.get("repaired"),
                    "corrupted_valid": t.get("corrupted_valid"),
                    "cut": rep.get("cut"),
                }
            )
    return out


def mode_switch(row: dict[str, Any]) -> dict[str, Any] | None:
    by_rate = row["_results"].get("robustness", {}).get("by_rate", {})
    for rep in by_rate.values():
        if rep.get("mode_switch"):
            return rep["mode_switch"].get("invalid")
    return None


def probe_summary(row: dict[str, Any], which: str = "trained") -> float | None:
    """Mean ancestor-probe accuracy over levels at the last probed layer (`trained`,
    `untrained`), or the mean of the exact ceilings (`ceiling`, `prefix_ceiling`: the same for
    every layer)."""
    probes = row["_results"].get("probes") or {}
    if which in ("ceiling", "prefix_ceiling"):
        scores = (probes.get(which) or {}).get("ancestor") or {}
    else:
        by_layer = probes.get(which) or {}
        if not by_layer:
            return None
        scores = by_layer[max(by_layer, key=int)].get("ancestor") or {}
    values = [v for v in scores.values() if v is not None]
    return sum(values) / len(values) if values else None


def probe_targets(row: dict[str, Any]) -> str | None:
    """What the probe targets are keyed by: levels (the paper's) or heights (any other CFG)."""
    probes = row["_results"].get("probes") or {}
    return (probes.get("targets") or "levels") if probes else None


def probe_scope(row: dict[str, Any]) -> str | None:
    """Which probe the numbers are: whole (the paper's, Σ over the whole string) or prefix."""
    probes = row["_results"].get("probes") or {}
    if not probes:
        return None
    return probes.get("scope") or ("whole" if probes.get("bidirectional") else "prefix")


# --- intervals shared with the plots -----------------------------------------------------------


def pooled(props: list[dict[str, Any]]) -> tuple[float, float, float] | None:
    """Pool {"k", "n"} counts (e.g. over seeds): (rate, 95% Wilson low, high)."""
    from cfglab.evaluate.generation import wilson

    k = sum(p["k"] for p in props if p)
    n = sum(p["n"] for p in props if p)
    if n == 0:
        return None
    return (k / n, *wilson(k, n))
