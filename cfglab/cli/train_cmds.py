"""`cfglab train`: one training run from flags or a YAML config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cfglab.cli.console import err, out
from cfglab.errors import CfglabError


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)


def train_command(
    config_file: Path | None = typer.Argument(
        None, help="YAML config (same fields as the flags)."
    ),
    grammar: str | None = typer.Option(None, "--grammar", help="Grammar file (.cfg)."),
    pe: str | None = typer.Option(None, "--pe", help="abs, rel, rot, pos, uni or mlm."),
    layers: int | None = typer.Option(None, "--layers"),
    heads: int | None = typer.Option(None, "--heads"),
    dim: int | None = typer.Option(None, "--dim"),
    context: int | None = typer.Option(None, "--context"),
    batch: int | None = typer.Option(None, "--batch"),
    steps: int | None = typer.Option(None, "--steps"),
    lr: float | None = typer.Option(None, "--lr"),
    warmup: int | None = typer.Option(None, "--warmup", help="Linear warm-up steps."),
    noise_fraction: float | None = typer.Option(None, "--noise-fraction"),
    noise_rate: float | None = typer.Option(None, "--noise-rate"),
    seed: int | None = typer.Option(None, "--seed"),
    threads: int | None = typer.Option(None, "--threads", help="torch threads (0 = all cores)."),
    checkpoint_every: int | None = typer.Option(None, "--checkpoint-every"),
    align_windows: bool | None = typer.Option(
        None,
        "--align-windows/--no-align-windows",
        help="Start every training window at a string's BOS (default) or cut the stream anywhere.",
    ),
    precision: str | None = typer.Option(
        None, "--precision", help="auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16."
    ),
    tensorboard: bool | None = typer.Option(
        None,
        "--tensorboard/--no-tensorboard",
        help="Write TensorBoard event files under RUN_DIR/tensorboard.",
    ),
    out_dir: Path | None = typer.Option(None, "--out", help="Run directory to write."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train one model; writes a run directory (config, metrics, checkpoints, model card)."""
    from cfglab.runs import RunDir, load_train_config, make_train_config

    flags = {
        "grammar": grammar,
        "pe": pe,
        "layers": layers,
        "heads": heads,
        "dim": dim,
        "context": context,
        "batch": batch,
        "steps": steps,
        "lr": lr,
        "warmup": warmup,
        "noise_fraction": noise_fraction,
        "noise_rate": noise_rate,
        "seed": seed,
        "threads": threads,
        "checkpoint_every": checkpoint_every,
        "align_windows": align_windows,
        "precision": precision,
        "tensorboard": tensorboard,
    }
    given: dict[str, Any] = {k: v for k, v in flags.items() if v is not None}
    if (
        resume
        and out_dir is not None
        and RunDir(out_dir).exists()
        and config_file is None
        and "grammar" not in given
    ):
        config = RunDir(out_dir).read_config().model_copy(update=given)
    elif config_file is not None:
        config = load_train_config(config_file, given)
    elif "grammar" in given:
        config = make_train_config(given, "command line")
    else:
        raise CfglabError("train: give a CONFIG.yaml, or at least --grammar (see --help)")
    if out_dir is None:
        out_dir = Path("runs") / f"{Path(config.grammar).stem}-{config.pe}-s{config.seed}"
    _train(config, out_dir, resume, quiet)


def _train(config, out_dir: Path, resume: bool, quiet: bool) -> None:  # noqa: ANN001
    from cfglab.grammar.dsl import load_grammar
    from cfglab.models import describe
    from cfglab.runs import model_config_for
    from cfglab.train import train

    mcfg = model_config_for(config, len(load_grammar(config.grammar).terminals))
    if not quiet:
        err.print(f"[bold]model[/bold] {config.pe}: {describe(mcfg)}")
    path = train(config, out_dir, resume=resume, quiet=quiet)
    out.print(f"run directory: {path}")
