"""`cfglab embedding`: Result 10's analysis of a run on an implicit grammar — does the
token-embedding layer group the tokens of each bag (encode the hidden terminal)?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from cfglab.cli.console import out


def register(app: typer.Typer) -> None:
    app.command("embedding")(embedding_command)


def embedding_command(
    run_dir: Path = typer.Argument(..., help="Run directory trained on an implicit grammar."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    seed: int = typer.Option(0, "--seed", help="Seed of the untrained twin (it gets seed + 1)."),
    step: int | None = typer.Option(None, "--step", help="Checkpoint step (default: newest)."),
    no_plot: bool = typer.Option(False, "--no-plot", help="Skip embedding.png."),
) -> None:
    """Within-bag vs between-bag cosine of the token embeddings and a held-out linear probe
    embedding → hidden terminal, beside the untrained twin, with Result 10's verdict. Writes
    RUN_DIR/embedding/ (embedding.json, and embedding.png: the similarity matrix by bag)."""
    from cfglab.interpret.embedding import embedding_run

    result = embedding_run(str(run_dir), seed=seed, step=step, plots=not no_plot)
    if as_json:
        out.print_json(json.dumps(result))
        return
    render_embedding(result)


_ROWS = (
    ("within", "cosine within a bag"),
    ("between", "cosine between bags"),
    ("gap", "gap (within − between)"),
    ("probe_accuracy", "probe → terminal (held out)"),
)


def render_embedding(result: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(
        title=f"token embeddings, step {result['step']}: {len(result['tokens'])} tokens in "
        f"{len(result['hidden'])} bags",
        title_justify="left",
    )
    table.add_column("measure")
    table.add_column("trained", justify="right")
    table.add_column("untrained twin", justify="right")
    for key, label in _ROWS:
        table.add_row(label, _num(result["trained"][key]), _num(result["untrained"][key]))
    out.print(table)
    if result["shared_tokens"] or result["unused_tokens"]:
        out.print(
            f"left out of the probe: {result['shared_tokens']} tokens in several bags, "
            f"{result['unused_tokens']} in none"
        )
    verdict = "encodes" if result["encodes_terminal"] else "does not show it encodes"
    out.print(f"the embedding {verdict} the hidden terminal (rule: {result['verdict_rule']})")
    written = [str(Path(result["run"]) / "embedding" / "embedding.json"), *result.get("plots", [])]
    out.print("written: " + ", ".join(written))


def _num(x: float) -> str:
    return "–" if x != x else f"{x:.3f}"  # NaN: no pair or token to score
