"""`cfglab probe` and `cfglab attention`: the paper's parse-tree probes and attention statistics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from cfglab.cli.console import err, out
from cfglab.cli.tables import FORMAT_HELP, Format, fit, write_csv
from cfglab.errors import CfglabError

_STEP = typer.Option(None, "--step", help="Checkpoint step to read (default: the newest).")
_DEVICE = typer.Option("cpu", "--device", help="torch device to run the model on (cpu, cuda).")


def register(app: typer.Typer) -> None:
    app.command("probe")(probe_command)
    app.command("attention")(attention_command)


def parse_layers(text: str | None) -> list[int] | None:
    """'0,1,2' -> [0, 1, 2]; None stays None (every layer)."""
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CfglabError(
            f"--layers: expected comma-separated layer numbers like 0,1,2, got {text!r}"
        ) from None


def probe_command(
    run_dir: Path = typer.Argument(..., help="Run directory (from `cfglab train`)."),
    layers: str | None = typer.Option(
        None, "--layers", help="Comma-separated, 0 = embeddings (default: all)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    n: int = typer.Option(384, "--n", min=8, help="Fresh strings to train the probes on."),
    n_test: int = typer.Option(192, "--n-test", min=8, help="Held-out strings to score on."),
    seed: int = typer.Option(0, "--seed", help="Seed of the probe strings and probe init."),
    threads: int = typer.Option(0, "--threads", help="torch threads (0 = all cores)."),
    step: int | None = _STEP,
    device: str = _DEVICE,
    no_controls: bool = typer.Option(
        False, "--no-controls", help="Skip untrained model, control task, output-only."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    scope: str = typer.Option(
        "whole",
        "--scope",
        help="whole: the paper's probe, Σ over every position of the string; prefix: k ≤ i only.",
    ),
    fmt: Format = typer.Option(Format.table, "--format", help=FORMAT_HELP),
) -> None:
    """Probe hidden states for NT ancestors and NT-ends, beside exact ceilings and controls;
    writes RUN_DIR/probe/."""
    from cfglab.interpret.probes import probe_run

    result = probe_run(
        str(run_dir),
        layers=parse_layers(layers),
        n_strings=n,
        n_test=n_test,
        seed=seed,
        threads=threads,
        quiet=quiet or as_json or fmt != Format.table,
        controls=not no_controls,
        step=step,
        device=device,
        scope=scope,
    )
    if as_json or fmt == Format.json:
        out.print_json(json.dumps(result))
        return
    render_probe(result, fmt)


_TITLES = {
    "ancestor": "ancestor NT (all positions)",
    "ancestor_at_end": "ancestor NT at NT-ends (multi-head probe)",
    "diagonal_at_end": "ancestor NT at NT-ends (diagonal probe, δ = 0)",
    "tridiagonal_at_end": "ancestor NT at NT-ends (tridiagonal probe, |k − i| ≤ 1)",
    "boundary": "NT-end bit (all positions)",
    "terminal": "hidden terminal of each token (implicit grammar, Result 10)",
}


def render_probe(result: dict[str, Any], fmt: Format = Format.table) -> None:
    """The probe tables: on the console (split across levels where it is narrow) or as CSV."""
    from cfglab.interpret.targets import LEVELS

    scope = result.get("scope", "prefix" if not result.get("bidirectional") else "whole")
    kind = result.get("targets", LEVELS)  # probe.json files from before the key: levels
    if fmt == Format.csv:
        write_csv(t for t, _, _ in _probe_tables(result, flat=True))
        return
    out.print(f"[bold]{result.get('probe', scope + ' probe')}[/bold]")
    if kind != LEVELS:
        out.print(f"targets by {result.get('targets_note', kind)}")
    _print_dropped(result)
    tables = _probe_tables(result)
    for table, few, empty in tables:
        for part in fit(table, out):
            out.print(part)
        if few:
            out.print(f"[dim]few held-out positions: {few}[/dim]")
        if empty:  # a column of dashes reads as a broken table: say why it is not there
            out.print(f"[dim]not shown: {empty} (no held-out position to score there)[/dim]")
    if kind == LEVELS and tables:
        out.print(LEVEL_LEGEND)
    if result["untrained"] and _negative_selectivity(result):
        out.print(NEGATIVE_SELECTIVITY)
    out.print(
        "ceiling: Bayes accuracy of the ideal reader of the whole string (exact, from the "
        "grammar's posterior on the same held-out strings); prefix ceiling: of the tokens up to "
        "i. ± is a 95% interval over strings."
    )
    if result.get("ceiling_reason"):
        out.print(f"ceilings {result['ceiling_reason']}")
    out.print(
        f"written: {Path(result['run']) / 'probe' / 'probe.json'}"
        + "".join(f", {p}" for p in result.get("plots", []))
    )


# the short column headings of a levels table (`level 1 (NT2)` took 14 columns a level)
LEVEL_LEGEND = "NTk: the paper's name of the level-(k−1) ancestor (NT1 is the root)."


def _probe_tables(result: dict[str, Any], flat: bool = False) -> list[tuple[Table, str, str]]:
    """Each metric's table with its two notes: the columns on few positions, those not shown.

    `flat`: every row named in full (`layer 1 untrained`), for CSV, where a row stands alone."""
    from cfglab.interpret.targets import LEVELS, target_label

    scope = result.get("scope", "prefix" if not result.get("bidirectional") else "whole")
    kind = result.get("targets", LEVELS)
    has_controls = bool(result["untrained"])
    tables = []
    for metric, title in _TITLES.items():
        target = "boundary" if metric == "boundary" else "ancestor"
        if metric == "terminal":  # one target, its columns the probes instead of levels
            levels, empty = ["all", "diagonal", "tridiagonal"], list[str]()
            headers = levels
            trained = (result["trained"].get(str(l)) or {} for l in result["layers"])
            if not any(t.get(metric) for t in trained):
                continue
        else:
            listed = [str(v) for v in result["levels"][target]]
            levels, empty = _scored_levels(result, metric, listed)
            headers = [_short_label(kind, int(v)) for v in levels]
        if not levels:
            continue
        table = Table(title=f"{title}, {scope} probe, by {kind} — accuracy %", title_justify="left")
        table.add_column("hidden states", no_wrap=True)
        for header in headers:
            table.add_column(header, justify="right", no_wrap=True)
        _probe_rows(table, result, metric, levels, has_controls, flat)
        few = _few_positions(result, metric, levels) if metric != "terminal" else ""
        tables.append((table, few, ", ".join(target_label(kind, int(v)) for v in empty)))
    return tables


def _short_label(kind: str, level: int) -> str:
    """`NT3` for level 2 (see LEVEL_LEGEND), `↑2` for a height."""
    from cfglab.grammar.levels import level_name
    from cfglab.interpret.targets import LEVELS, target_label

    return level_name(level) if kind == LEVELS else target_label(kind, level)


def _probe_rows(
    table: Table,
    result: dict[str, Any],
    metric: str,
    levels: list[str],
    has_controls: bool,
    flat: bool,
) -> None:
    """Each layer's trained probe and its controls, a section each, then the summary rows."""
    for layer in map(str, result["layers"]):
        name = "embedding" if layer == "0" else f"layer {layer}"
        for family, label in _families(metric, has_controls):
            scores = (result[family].get(layer) or {}).get(metric)
            if scores is None:
                continue
            ci = (result[family].get(layer) or {}).get(f"{metric}_ci95") or {}
            cells = [_pct(scores.get(v), family == "selectivity") + _ci(ci.get(v)) for v in levels]
            if label and flat:
                table.add_row(f"{name} {label}", *cells)
            elif label:
                table.add_row(f"[dim]  {label}[/dim]", *[f"[dim]{c}[/dim]" for c in cells])
            else:
                table.add_row(name, *cells)
        table.add_section()
    for name, label in _SUMMARY_ROWS:
        scores = (result.get(name) or {}).get(metric)
        if scores:
            table.add_row(label, *[_pct(scores.get(v)) for v in levels])


# Hewitt & Liang's reading of a selectivity below 0, for the line under the probe tables
NEGATIVE_SELECTIVITY = (
    "selectivity = accuracy − control-task accuracy (Hewitt & Liang: a random label per token "
    "n-gram). Below 0: the probe learns those random labels better than the real ones, so its "
    "accuracy there shows no more than what it can memorise from the tokens."
)


def _scored_levels(
    result: dict[str, Any], metric: str, levels: list[str]
) -> tuple[list[str], list[str]]:
    """The levels some trained layer has a score for, and the ones left without any."""
    trained = [(result["trained"].get(str(l)) or {}).get(metric) or {} for l in result["layers"]]
    scored = [v for v in levels if any(t.get(v) is not None for t in trained)]
    return scored, [v for v in levels if v not in scored]


FEW_POSITIONS = 30  # below this a column's accuracy swings by whole tokens


def _few_positions(result: dict[str, Any], metric: str, levels: list[str]) -> str:
    """`↑5 n=12, ↑6 n=3` for the columns scored on fewer than FEW_POSITIONS positions."""
    from cfglab.interpret.targets import LEVELS, target_label

    kind = result.get("targets", LEVELS)
    where = "ancestor_at_end" if metric.endswith("_at_end") else metric
    n = (result.get("positions") or {}).get(where) or {}
    return ", ".join(
        f"{target_label(kind, int(v))} n={n[v]}"
        for v in levels
        if n.get(v, FEW_POSITIONS) < FEW_POSITIONS
    )


def _print_dropped(result: dict[str, Any]) -> None:
    note = (result.get("strings") or {}).get("dropped_note")
    if note:
        out.print(f"[yellow]{note}[/yellow]")


_SUMMARY_ROWS = (
    ("ceiling", "ceiling (whole string)"),
    ("prefix_ceiling", "ceiling (prefix)"),
    ("majority", "majority"),
    ("output_only", "output only (log-probs)"),
    ("output_tokens", "token ⊕ model log-probs"),
    ("true_output_tokens", "token ⊕ true next-token rows"),
)


def _ci(x: float | None) -> str:
    return "" if x is None else f" ±{100 * x:.1f}"


def _negative_selectivity(result: dict[str, Any]) -> bool:
    """Whether a selectivity row of the tables (ancestor, boundary) shows a value below 0."""
    return any(
        v is not None and v < 0
        for by_metric in (result.get("selectivity") or {}).values()
        for metric in ("ancestor", "boundary")
        for v in (by_metric.get(metric) or {}).values()
    )


def _families(metric: str, controls: bool) -> list[tuple[str, str]]:
    """(result key, row label) under each layer: the trained probe, then its controls."""
    rows = [("trained", "")]
    if controls:
        rows.append(("untrained", "untrained"))
        if metric in ("ancestor", "boundary"):
            rows.append(("selectivity", "selectivity"))
    return rows


def _pct(x: float | None, sign: bool = False) -> str:
    if x is None:
        return "–"
    return f"{100 * x:+.1f}" if sign else f"{100 * x:.1f}"


def attention_command(
    run_dir: Path = typer.Argument(..., help="Run directory (from `cfglab train`)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    n: int = typer.Option(64, "--n", min=1, help="Fresh strings to average over."),
    seed: int = typer.Option(0, "--seed", help="Seed of the strings."),
    threads: int = typer.Option(0, "--threads", help="torch threads (0 = all cores)."),
    step: int | None = _STEP,
    device: str = _DEVICE,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    fmt: Format = typer.Option(Format.table, "--format", help=FORMAT_HELP),
) -> None:
    """Attention by distance, and attention beyond distance at NT boundaries (b♯ classes,
    end→end across levels); writes RUN_DIR/attention/."""
    from cfglab.interpret.attention import attention_run

    result = attention_run(
        str(run_dir),
        n_strings=n,
        seed=seed,
        threads=threads,
        quiet=quiet or as_json or fmt != Format.table,
        step=step,
        device=device,
    )
    if as_json or fmt == Format.json:
        out.print_json(json.dumps(result))
        return
    if not result["meaningful"]:
        err.print(f"[yellow]{result['reason']}[/yellow]")
        return
    if fmt == Format.csv:
        write_csv([attention_table(result)])
        return
    render_attention(result)
    if "note" in result:
        out.print(f"[yellow]note: {result['note']}[/yellow]")


def render_attention(result: dict[str, Any]) -> None:
    table = attention_table(result)
    out.print(table)
    legend = ["B end: B at an NT-end to the NT-end itself (δ=0)"]
    if result.get("offset_sharp"):
        legend.append("B♯ end: the same at b♯ NT-ends (δ=0)")
    legend.append("B prev: B from an NT-end to the previous NT-end (r=1)")
    for line in ["L: layer, h: head", *legend]:
        out.print(line)
    if result.get("targets", "levels") != "levels":
        out.print(f"targets by {result.get('targets_note')}")
    if result.get("dropped_note"):
        out.print(f"[yellow]{result['dropped_note']}[/yellow]")
    out.print(
        f"written: {Path(result['run']) / 'attention' / 'attention.json'}"
        + "".join(f", {q}" for q in result.get("plots", []))
    )


def attention_table(result: dict[str, Any]) -> Table:
    """One row per layer and head: Ā at a few distances, then the B columns."""
    p = result["distance"]["p"]
    near = [d for d in (0, 1, 2, 4, 8) if d in p]
    r_col = result["adjacency"]["r"].index(1) if 1 in result["adjacency"]["r"] else None
    d_col = result["offset"]["delta"].index(0)
    # short headers and a legend: at 80 columns (or in a pipe) long ones squeezed the B
    # columns, the figures the command exists for, down to `-0.0…`
    over = "levels" if result.get("targets", "levels") == "levels" else "heights ↑h"
    table = Table(
        title=f"attention: Ā by distance p, B = A − Ā at NT-ends (mean over {over})",
        title_justify="left",
        box=None,
        padding=(0, 1),
        header_style="bold",
    )
    table.add_column("L", no_wrap=True)
    table.add_column("h", no_wrap=True)
    for d in near:
        table.add_column(f"Ā p{d}", justify="right", no_wrap=True, min_width=5)
    table.add_column("B end", justify="right", no_wrap=True, min_width=6)
    sharp = result.get("offset_sharp")
    if sharp:
        table.add_column("B♯ end", justify="right", no_wrap=True, min_width=6)
    table.add_column("B prev", justify="right", no_wrap=True, min_width=6)
    for l, heads in enumerate(result["distance"]["mean"]):
        for h, curve in enumerate(heads):
            cells = [_num(curve[p.index(d)]) for d in near]
            off = _mean(row[d_col] for row in result["offset"]["mean_B"][l][h])
            adj = (
                _mean(row[r_col] for row in result["adjacency"]["mean_B"][l][h])
                if r_col is not None
                else None
            )
            extra = []
            if sharp:
                col = sharp["delta"].index(0)
                extra = [_num(_mean(row[col] for row in sharp["mean_B"][l][h]), sign=True)]
            table.add_row(
                str(l + 1), str(h), *cells, _num(off, sign=True), *extra, _num(adj, sign=True)
            )
    return table


def _mean(values: Any) -> float | None:
    xs = [v for v in values if v is not None]
    return sum(xs) / len(xs) if xs else None


def _num(x: float | None, sign: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x:+.3f}" if sign else f"{x:.3f}"
