"""`cfglab demo` (what `make demo` runs): sweeps/quick.yaml end to end on a local Ray, then the
report. Run it again and it continues (or just re-reports) the same sweep."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from cfglab.cli.console import err, out
from cfglab.errors import CfglabError

QUICK = Path("sweeps") / "quick.yaml"


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)


def quick_sweep_file() -> Path:
    """sweeps/quick.yaml from the current directory, else from the source checkout."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (base / QUICK).is_file():
            return base / QUICK
    raise CfglabError(f"{QUICK} not found: run `cfglab demo` from the cfglab checkout")


def demo_command(
    fresh: bool = typer.Option(False, "--fresh", help="Delete the previous demo sweep first."),
    dashboard: bool = typer.Option(
        True,
        "--dashboard/--no-dashboard",
        help="Start the Ray dashboard (printed URL, loopback only).",
    ),
    smoke: bool = typer.Option(
        False,
        "--smoke",
        help="The quick file's smoke overrides: a one-minute check that everything runs.",
    ),
) -> None:
    """Train mini × {abs, rot} × {clean, noisy} on local Ray (CPU), evaluate, probe, report."""
    from cfglab.cli.sweep_cmds import _report, run
    from cfglab.sweep.spec import load_sweep
    from cfglab.sweep.tune import sweep_dir_for

    file = quick_sweep_file()
    loaded = load_sweep(file, smoke)
    where = sweep_dir_for(loaded)
    if fresh and where.exists():
        shutil.rmtree(where)
    resume = where.exists()
    length = "about a minute" if smoke else "10-15 minutes on 2 CPU cores"
    err.print(
        f"[bold]demo[/bold] {file} ({'continuing' if resume else 'starting'}; {length}; "
        "Ctrl-C stops, `cfglab demo` resumes)"
    )
    sweep_dir = run(loaded, file, None, resume, smoke, dashboard, False)
    if sweep_dir is not None:
        _report(sweep_dir)
        page = sweep_dir / "report" / "report.html"
        out.print(f"[bold green]demo done[/bold green]: open {page}")
