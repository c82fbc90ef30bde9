"""`cfglab train`: one training run from flags or a YAML config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from cfglab.cli.config_flags import given_flags, with_config_flags
from cfglab.cli.console import err, out
from cfglab.errors import CfglabError
from cfglab.runs import TrainConfig

_GROUPS = {
    "model": "pe mlm_pe layers heads dim mlp_ratio bias tie_weights rope_base rope_dim max_rel "
    "dropout compile",
    # a panel of its own: the on/off column of --canon-residual would squeeze the model panel
    "Canon layers (Part 4.1)": "canon canon_kernel canon_residual",
    "optimiser": "steps lr min_lr warmup weight_decay beta1 beta2 grad_clip batch",
    "data": "grammar context noise_fraction noise_rate mask_prob holdout_rule chunk_strings "
    "align_windows seed",
    # no on/off flags here, so the long names keep their width at 80 columns
    "checkpoints and logs": "checkpoint_every keep_checkpoints eval_every eval_batches log_every",
}
# `train --help` under six headings rather than one list of ~45 flags; a field not named
# above (a new one) goes under "run".
PANELS = {field: group for group, fields in _GROUPS.items() for field in fields.split()} | {
    field: "run"
    for field in TrainConfig.model_fields
    if not any(field in f.split() for f in _GROUPS.values())
}


def register(app: typer.Typer) -> None:
    app.command("train")(with_config_flags(TrainConfig, train_command, PANELS))


def train_command(
    config_file: Path | None = typer.Argument(
        None, help="YAML config (same fields as the flags; flags override it)."
    ),
    out_dir: Path | None = typer.Option(
        None, "--out", help="Run directory to write.", rich_help_panel="run"
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in --out.", rich_help_panel="run"
    ),
    extend_steps: int | None = typer.Option(
        None,
        "--extend-steps",
        min=1,
        metavar="TOTAL",
        help="With --resume: train the run on to TOTAL steps; the LR decay is re-stretched "
        "to end at TOTAL, from the checkpoint on.",
        rich_help_panel="run",
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress bar.", rich_help_panel="run"
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the run directory and the final metrics as JSON.",
        rich_help_panel="run",
    ),
    **flags: Any,
) -> None:
    """Train one model; writes a run directory (config, metrics, checkpoints, model card)."""
    config = resolve_config(config_file, out_dir, resume, given_flags(TrainConfig, flags))
    if out_dir is None:
        out_dir = Path("runs") / f"{Path(config.grammar).stem}-{config.pe}-s{config.seed}"
    _train(config, out_dir, resume, quiet or as_json, as_json, extend_steps)


def resolve_config(
    config_file: Path | None, out_dir: Path | None, resume: bool, given: dict[str, Any]
) -> TrainConfig:
    """The run's config: the YAML file (or, resuming, the run's own config) with the flags given
    on top; flags alone need at least --grammar."""
    from cfglab.runs import RunDir, load_train_config, make_train_config

    if (
        resume
        and out_dir is not None
        and RunDir(out_dir).exists()
        and config_file is None
        and "grammar" not in given
    ):
        stored = RunDir(out_dir).read_config().model_dump()
        return make_train_config(stored | given, "command line")
    if config_file is not None:
        return load_train_config(config_file, given)
    if "grammar" in given:
        return make_train_config(given, "command line")
    raise CfglabError("train: give a CONFIG.yaml, or at least --grammar (see --help)")


def _train(
    config: TrainConfig,
    out_dir: Path,
    resume: bool,
    quiet: bool,
    as_json: bool,
    extend_steps: int | None = None,
) -> None:
    from cfglab.grammar.dsl import load_grammar
    from cfglab.models import describe
    from cfglab.runs import model_config_for
    from cfglab.train import context_warning, train

    grammar = load_grammar(config.grammar)
    warning = context_warning(grammar, config.context)
    if warning:
        err.print(f"[yellow]warning:[/yellow] {warning}", soft_wrap=True)
    mcfg = model_config_for(config, len(grammar.terminals))
    if not quiet:
        err.print(f"[bold]model[/bold] {describe(mcfg)}")  # its first line names the PE
    path = train(config, out_dir, resume=resume, quiet=quiet, extend_to=extend_steps)
    if as_json:
        from cfglab.runs import RunDir

        metrics = RunDir(path).metrics()
        print(json.dumps({"run_dir": str(path), "metrics": metrics[-1] if metrics else {}}))
        return
    out.print(f"run directory: {path}")
