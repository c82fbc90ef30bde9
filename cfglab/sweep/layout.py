"""The sweep directory as an interface between the sweep, its tasks and the report.

    SWEEP_DIR = STORAGE/NAME/
      sweep.json           the validated sweep file (smoke overrides applied) and its source
      plan.json            the grid: one entry per trial (name, coordinates, training config)
      grammars/            copies of the grammar files the runs train on
      runs/NAME/           one run directory per trial (the layout of cfglab.runs)
      results/NAME/KIND.json   one file per finished task (evaluate, robustness, probes, ...)
      trial_starts.jsonl   one line each time a trial's training (re)starts, with its first step
      crashed/NAME         CFGLAB_CRASH_AT_STEP's marker: this trial's injected crash happened
      tune/                Ray Tune's own state: what `--resume` restores
      report/              report.html, results.csv, *.png

Everything here is plain files, so `cfglab report` needs neither Ray nor the sweep file.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cfglab.errors import CfglabError
from cfglab.runs import write_atomic
from cfglab.sweep.spec import SweepPlan, TrialPlan

TUNE_NAME = "tune"


@dataclass(frozen=True)
class TrialStart:
    """One line of trial_starts.jsonl: a trial's training (re)started at `from_step`."""

    run: str
    from_step: int
    pid: int
    time: str


@dataclass(frozen=True)
class SweepDir:
    path: Path

    @property
    def spec_path(self) -> Path:
        return self.path / "sweep.json"

    @property
    def plan_path(self) -> Path:
        return self.path / "plan.json"

    @property
    def grammar_dir(self) -> Path:
        return self.path / "grammars"

    @property
    def tune_dir(self) -> Path:
        return self.path / TUNE_NAME

    @property
    def report_dir(self) -> Path:
        return self.path / "report"

    @property
    def starts_path(self) -> Path:
        return self.path / "trial_starts.jsonl"

    def run(self, name: str) -> Path:
        return self.path / "runs" / name

    def result_path(self, name: str, kind: str) -> Path:
        return self.path / "results" / name / f"{kind}.json"

    # --- the plan ------------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.plan_path.exists()

    def has_tune_state(self) -> bool:
        return (self.tune_dir / "tuner.pkl").exists()

    def write_plan(self, plan: SweepPlan) -> list[TrialPlan]:
        """Copy the grammars in, point every run at its copy, and record the plan."""
        self.grammar_dir.mkdir(parents=True, exist_ok=True)
        copies = {}
        for name, source in plan.grammars.items():
            copy = self.grammar_dir / f"{name}.cfg"
            if not copy.exists():  # on resume, runs continue on the grammar they started with
                write_atomic(copy, source.read_bytes())
            copies[name] = copy
        trials = [
            TrialPlan(
                t.name, t.coordinates, {**t.train, "grammar": str(copies[t.coordinates["grammar"]])}
            )
            for t in plan.trials
        ]
        spec = {
            "source": str(plan.sweep.path),
            "smoke": plan.sweep.smoke,
            "name": plan.sweep.name,
            "spec": plan.spec.model_dump(mode="json"),
        }
        write_atomic(self.spec_path, json.dumps(spec, indent=2).encode())
        write_atomic(self.plan_path, json.dumps([asdict(t) for t in trials], indent=2).encode())
        return trials

    def read_plan(self) -> list[TrialPlan]:
        if not self.plan_path.exists():
            raise CfglabError(f"{self.path}: not a sweep directory (no plan.json)")
        return [TrialPlan(**t) for t in json.loads(self.plan_path.read_text())]

    def read_spec(self) -> dict[str, Any]:
        if not self.spec_path.exists():
            raise CfglabError(f"{self.path}: not a sweep directory (no sweep.json)")
        return json.loads(self.spec_path.read_text())

    # --- task results and trial starts ---------------------------------------------------------

    def write_result(self, name: str, kind: str, record: dict[str, Any]) -> None:
        path = self.result_path(name, kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(record, indent=1, default=_jsonable).encode())

    def read_result(self, name: str, kind: str) -> dict[str, Any] | None:
        path = self.result_path(name, kind)
        return json.loads(path.read_text()) if path.exists() else None

    def log_start(self, name: str, from_step: int) -> None:
        """Append one line per (re)start; O_APPEND keeps concurrent writers' lines whole."""
        start = TrialStart(name, from_step, os.getpid(), time.strftime("%Y-%m-%dT%H:%M:%S"))
        line = json.dumps(asdict(start)) + "\n"
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.starts_path, "a") as f:
            f.write(line)

    def starts(self) -> list[TrialStart]:
        if not self.starts_path.exists():
            return []
        lines = self.starts_path.read_text().splitlines()
        return [TrialStart(**json.loads(x)) for x in lines if x.strip()]


def _jsonable(x: Any) -> Any:
    """numpy scalars and arrays, paths: whatever an evaluation returns, as JSON."""
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    return repr(x)
