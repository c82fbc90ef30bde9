"""`cfglab export`: a run as a Hugging Face model directory (see cfglab.interop.export);
`cfglab activations`: residual streams with their labels (cfglab.interop.activations)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cfglab.cli.console import out


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
    app.command("activations")(activations_command)


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


def activations_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by `cfglab train`."),
    out_dir: Path = typer.Option(..., "--out", help="Directory for layer_{l}.safetensors."),
    n: int = typer.Option(100, "--n", min=1, help="Fresh strings (cfglab sample's draw)."),
    layers: str | None = typer.Option(
        None, "--layers", help="Comma-separated, 0 = embeddings (default: all)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the strings (as cfglab sample --seed)."),
    step: int | None = typer.Option(None, "--step", help="Checkpoint step (default newest)."),
    device: str = typer.Option("cpu", "--device", help="torch device (cpu, cuda)."),
    threads: int = typer.Option(0, "--threads", help="torch threads (0 = all cores)."),
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
) -> None:
    """Residual streams of N fresh strings with per-token labels (token, string, position,
    ancestors and NT-ends per level, b♯), one safetensors file per layer."""
    from cfglab.cli.probe_cmds import parse_layers
    from cfglab.interop.activations import write_activations

    result = write_activations(
        run_dir, out_dir, n, parse_layers(layers), seed, step, device, threads
    )
    if as_json:
        print(json.dumps(result, indent=2))
        return
    out.print(
        f"{result['n_tokens']} tokens of {result['n_strings']} strings, d = {result['d_model']}, "
        f"layers {result['layers']}: {result['out_dir']}"
    )
    if result["dropped"]:
        out.print(f"  {len(result['dropped'])} strings too long for the context were left out")
