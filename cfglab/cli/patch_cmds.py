"""`cfglab patch`: activation patching judged by the exact chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from cfglab.cli.console import out
from cfglab.cli.probe_cmds import parse_layers
from cfglab.cli.tables import fit


def register(app: typer.Typer) -> None:
    app.command("patch")(patch_command)


def patch_command(
    run_dir: Path = typer.Argument(..., help="Run directory of a decoder (from `cfglab train`)."),
    pairs: int = typer.Option(200, "--pairs", min=2, help="Prefix pairs (base, donor)."),
    layers: str | None = typer.Option(
        None, "--layers", help="Comma-separated, 0 = embeddings (default: all)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    seed: int = typer.Option(0, "--seed", help="Seed of the strings, pairs and random positions."),
    min_tv: float = typer.Option(
        0.5, "--min-tv", min=0.0, max=1.0, help="Least total variation between the true rows."
    ),
    threads: int = typer.Option(0, "--threads", help="torch threads (0 = all cores)."),
    step: int | None = typer.Option(None, "--step", help="Checkpoint step (default: newest)."),
    device: str = typer.Option("cpu", "--device", help="torch device (cpu, cuda)."),
    no_controls: bool = typer.Option(False, "--no-controls", help="Skip the untrained twin."),
) -> None:
    """Patch the donor prefix's residual stream into the base prefix's run at each layer and
    position set; how far the next-token prediction moves, and against the exact rows of both
    prefixes. Writes RUN_DIR/patch/."""
    from cfglab.interpret.patching import patch_run

    result = patch_run(
        str(run_dir),
        n_pairs=pairs,
        layers=parse_layers(layers),
        seed=seed,
        min_tv=min_tv,
        threads=threads,
        step=step,
        device=device,
        controls=not no_controls,
    )
    if as_json:
        out.print_json(json.dumps(result))
        return
    render_patch(result)


def render_patch(result: dict[str, Any]) -> None:
    panels = [("trained", result["results"])]
    if result.get("untrained"):
        panels.append(("untrained twin", result["untrained"]["results"]))
    _tables(panels, f"{result['pairs']} pairs, {result['pe']}")
    sub = result.get("subtree")
    if sub:
        out.print(
            f"subtree swap ({sub['swaps']} swaps): true rows equal in {sub['truth_equal']:.0%}; "
            f"model KL(base ‖ swapped) {sub['model_kl']:.4f} vs {sub['random_pair_kl']:.3f} for "
            "the pairs above"
        )
        swap_panels = [("subtree swap, trained", sub["results"])]
        twin = (result.get("untrained") or {}).get("subtree")
        if twin:
            swap_panels.append(("subtree swap, untrained twin", twin["results"]))
        _tables(swap_panels, f"{sub['swaps']} swaps")
    base, donor = result["reference"]["base"], result["reference"]["donor"]
    out.print(
        "KL to the true rows (nats), unpatched: base run vs base truth "
        f"{base['kl_to_base_truth']:.3f}, vs donor truth {base['kl_to_donor_truth']:.3f}; "
        f"donor run vs donor truth {donor['kl_to_donor_truth']:.3f}. "
        f"restored = {result['restored_definition']}."
    )
    out.print(
        f"written: {Path(result['run']) / 'patch' / 'patch.json'}"
        + "".join(f", {p}" for p in result.get("plots", []))
    )


def _tables(panels: list[tuple[str, list[dict[str, Any]]]], what: str) -> None:
    """One table per panel: position sets down, layers across, restored [95% CI] in the cells."""
    from rich.table import Table

    for title, rows in panels:
        layers = sorted({r["layer"] for r in rows})
        table = Table(title=f"{title}: restored (95% CI) — {what}", title_justify="left")
        table.add_column("positions", no_wrap=True)
        for layer in layers:
            name = "embedding" if layer == 0 else f"layer {layer}"
            table.add_column(name, justify="right", no_wrap=True)
        by = {(r["positions"], r["layer"]): r for r in rows}
        for name in dict.fromkeys(r["positions"] for r in rows):
            table.add_row(name, *[_cell(by.get((name, l))) for l in layers])
        for part in fit(table, out):  # split across layers where the console is narrow
            out.print(part)


def _cell(row: dict[str, Any] | None) -> str:
    if row is None or row["restored"] is None:
        return "–"
    lo, hi = row["ci95"]
    ci = "" if lo is None else f" [{lo:.2f}, {hi:.2f}]"
    return f"{row['restored']:.2f}{ci}"
