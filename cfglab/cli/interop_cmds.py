"""`cfglab export`: a run as a Hugging Face model directory (see cfglab.interop.export)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cfglab.cli.console import out


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)


def export_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by `cfglab train`."),
    out_dir: Path = typer.Argument(..., help="New directory for the Hugging Face model."),
    step: int | None = typer.Option(None, "--step", help="Checkpoint step (default newest)."),
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
) -> None:
    """Write an abs run as GPT2LMHeadModel, a rot run as GPTNeoXForCausalLM, plus a tokenizer.

    The directory loads with AutoModelForCausalLM / AutoTokenizer.from_pretrained(OUT_DIR) and
    no cfglab code; rel, pos, uni and mlm runs are refused (no stock architecture has them).
    """
    from transformers.utils import logging as hf_logging

    from cfglab.interop.export import export_run

    hf_logging.disable_progress_bar()
    path = export_run(run_dir, out_dir, step=step)
    config = json.loads((path / "config.json").read_text())
    result = {
        "out_dir": str(path.resolve()),
        "architecture": config["architectures"][0],
        "files": sorted(p.name for p in path.iterdir()),
        **config.get("cfglab", {}),
    }
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        out.print(f"{result['architecture']} written to {result['out_dir']}")
        out.print(f"  AutoModelForCausalLM.from_pretrained({str(path)!r})")
