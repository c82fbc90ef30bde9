"""`cfglab sweep FILE` (a grid of runs on Ray Tune) and `cfglab report SWEEP_DIR`."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from cfglab.cli.console import err, out
from cfglab.errors import CfglabError

_JSON = typer.Option(
    False, "--json", help="Print the sweep directory, report files and result rows as JSON."
)


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep_command)
    app.command("report")(report_command)


def sweep_command(
    file: Path = typer.Argument(..., help="Sweep file (sweeps/*.yaml)."),
    address: str | None = typer.Option(
        None,
        "--address",
        help="Join the Ray cluster at HOST:PORT (default: RAY_ADDRESS, else "
        "a local Ray started for this sweep).",
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue an interrupted sweep: "
        "finished trials and tasks are kept, the rest resumes from its "
        "last checkpoint.",
    ),
    smoke: bool = typer.Option(
        False,
        "--smoke",
        help="Apply the file's `smoke:` overrides (a "
        "quick CPU check; the sweep is named NAME-smoke).",
    ),
    dashboard: bool = typer.Option(
        True, "--dashboard/--no-dashboard", help="Start the Ray dashboard with a local Ray."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Ray's and the trials' logs too."),
    storage: Path | None = typer.Option(
        None,
        "--storage",
        help="Where the sweep directory goes (STORAGE/NAME), over the file's `storage:`.",
    ),
    as_json: bool = _JSON,
) -> None:
    """Train every point of a grid on Ray Tune, evaluate each run as a Ray task, write a report."""
    from cfglab.sweep.spec import load_sweep

    loaded = load_sweep(file, smoke)  # a bad file fails here, before Ray starts
    if storage is not None:
        loaded = with_storage(loaded, storage)
    sweep = run(loaded, file, address, resume, smoke, dashboard, verbose, as_json, storage)
    if sweep is not None:
        _report(sweep, as_json)


def with_storage(loaded: Any, storage: Path) -> Any:
    """The sweep with `storage` in place of its file's `storage:`."""
    import dataclasses

    spec = loaded.spec.model_copy(update={"storage": str(storage)})
    return dataclasses.replace(loaded, spec=spec)


def resume_command(
    file: Path, smoke: bool, address: str | None, storage: Path | None = None
) -> str:
    parts = (
        ["cfglab", "sweep", str(file), "--resume"]
        + (["--smoke"] if smoke else [])
        + (["--address", address] if address else [])
        + (["--storage", str(storage)] if storage else [])
    )
    return " ".join(shlex.quote(p) for p in parts)


def run(
    loaded: Any,
    file: Path,
    address: str | None,
    resume: bool,
    smoke: bool,
    dashboard: bool,
    verbose: bool,
    as_json: bool = False,
    storage: Path | None = None,
) -> Path | None:
    """Run the sweep; the sweep directory when every trial finished, None when interrupted."""
    from cfglab.sweep.tune import run_sweep

    outcome = run_sweep(
        loaded,
        address=address,
        resume=resume,
        dashboard=dashboard,
        verbose=verbose,
        # soft_wrap: a log line stays one line, not folded at a pipe's 80 columns
        say=lambda m: err.print(f"[bold]sweep[/bold] {m}", soft_wrap=True),
        progress=_task_progress,
    )
    again = resume_command(file, smoke, address, storage)
    if outcome.interrupted:
        err.print(
            f"[yellow]interrupted[/yellow]: the sweep's state is saved in "
            f"{outcome.sweep_dir}\n  resume with: [bold]{again}[/bold]"
        )
        sys.exit(130)  # SystemExit: holds non-standalone too, where typer.Exit's code is returned
    err.print(
        f"[bold]sweep[/bold] {len(outcome.statuses)} trials in {outcome.seconds / 60:.1f} min"
    )
    for key, message in sorted(outcome.task_errors.items()):
        err.print(f"[red]task failed[/red] {key}: {message}")
    if outcome.failed or outcome.task_errors:
        _report(outcome.sweep_dir, as_json)
        what = []
        if outcome.failed:
            what.append(
                f"{len(outcome.failed)} trial(s) failed after their retries "
                f"({', '.join(outcome.failed[:4])}); their errors are in "
                f"{outcome.sweep_dir / 'tune'}/TRIAL/error.txt"
            )
        if outcome.task_errors:
            what.append(f"{len(outcome.task_errors)} evaluation task(s) failed")
        raise CfglabError("; ".join(what) + f"\n  after a fix, rerun them with: {again}")
    return outcome.sweep_dir


def _task_progress(total: int) -> Callable[[int], None]:
    # each task's own line ("evaluate RUN finished in 12 s (3/8 tasks done)") comes from the
    # sweep's TaskPool as it lands, so waiting needs no count of its own
    err.print(f"[bold]sweep[/bold] waiting for {total} evaluation task(s)")
    return lambda n: None


def _report(sweep_dir: Path, as_json: bool = False) -> None:
    from cfglab.sweep.report import collect, rich_table, write_report

    files = write_report(sweep_dir)
    spec, rows = collect(sweep_dir)
    if as_json:
        record = {
            "sweep_dir": str(sweep_dir),
            "results_csv": str(files.csv),
            "report_html": str(files.html),
            "rows": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
        }
        print(json.dumps(record, default=str))
        return
    title = f"sweep {spec.get('name', sweep_dir.name)}"
    if spec.get("smoke"):  # its figures check the pipeline; say so before anyone reads them
        title += " — SMOKE run (a pipeline check, not a measurement)"
    out.print(rich_table(rows, title=title))
    out.print(f"results: {files.csv}")
    out.print(f"report:  {files.html}")


def report_command(
    sweep_dir: Path = typer.Argument(..., help="A sweep directory (STORAGE/NAME)."),
    as_json: bool = _JSON,
) -> None:
    """Tables, results.csv, plots and report.html of a sweep (finished or still running)."""
    if not sweep_dir.is_dir():
        raise CfglabError(f"{sweep_dir}: no such directory")
    _report(sweep_dir, as_json)
