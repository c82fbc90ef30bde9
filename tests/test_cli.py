"""CLI conventions: train flags generated from TrainConfig, --json, --version, choices."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest
import typer
import yaml
from pydantic import Field
from typer.testing import CliRunner

from cfglab.cli import app
from cfglab.cli.config_flags import flag_name, with_config_flags
from cfglab.cli.train_cmds import resolve_config
from cfglab.errors import CfglabError
from cfglab.models.config import PE
from cfglab.runs import RunDir, TrainConfig

GRAMMAR = """grammar small
start S
S -> A B | B A A
A -> "1" "2" | "3" | B "1"
B -> "2" "2" "3" | "1"
"""

TINY = {
    "pe": "rot",
    "layers": 1,
    "heads": 2,
    "dim": 16,
    "context": 32,
    "batch": 4,
    "steps": 6,
    "checkpoint_every": 2,
    "keep_checkpoints": 5,
    "eval_every": 2,
    "log_every": 1,
    "eval_batches": 1,
    "threads": 1,
    "chunk_strings": 32,
}


def _options(command: str) -> dict[str, Any]:
    group = typer.main.get_command(app)
    cmd = group.commands[command]  # type: ignore[attr-defined]
    return {opt: p for p in cmd.params for opt in [*p.opts, *p.secondary_opts]}


@pytest.fixture(scope="module")
def grammar_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("g") / "small.cfg"
    p.write_text(GRAMMAR)
    return p


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, grammar_file: Path) -> tuple[Path, dict]:
    """A run trained through `cfglab train CONFIG.yaml --steps 4 --json`: the YAML says 6."""
    tmp = tmp_path_factory.mktemp("run")
    config = tmp / "c.yaml"
    config.write_text(yaml.safe_dump({"grammar": str(grammar_file), **TINY}))
    out = tmp / "r"
    result = CliRunner().invoke(
        app, ["train", str(config), "--steps", "4", "--lr", "0.002", "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_every_config_field_is_a_flag_with_its_description_as_help() -> None:
    options = _options("train")
    for name, info in TrainConfig.model_fields.items():
        assert info.description, f"TrainConfig.{name} has no description"
        param = options[flag_name(name)]
        assert param.help.startswith(info.description.rstrip())
    # flags that are not config fields keep working
    assert {"--out", "--resume", "--quiet", "-q", "--json"} <= set(options)


def test_pe_is_a_choice_from_the_registry() -> None:
    help_text = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    assert "<" + "|".join(p.value for p in PE) + ">" in help_text
    result = CliRunner().invoke(app, ["train", "--grammar", "x.cfg", "--pe", "rott"])
    assert result.exit_code == 2 and "rott" in result.output


def test_a_new_config_field_becomes_a_flag_with_no_extra_code() -> None:
    class Extended(TrainConfig):
        schedule: Literal["linear", "cosine"] = Field("linear", description="LR schedule.")
        milestones: list[int] = Field(default_factory=list, description="Steps to mark.")
        tensorboard: bool = Field(False, description="Write TensorBoard events.")

    seen: dict[str, Any] = {}

    def command(**flags: Any) -> None:
        from cfglab.cli.config_flags import given_flags

        seen.update(given_flags(Extended, flags))

    cli = typer.Typer()
    cli.command()(with_config_flags(Extended, command))
    args = ["--schedule", "cosine", "--milestones", "[10, 20]", "--tensorboard", "--steps", "7"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert seen == {"schedule": "cosine", "milestones": [10, 20], "tensorboard": True, "steps": 7}
    bad = CliRunner().invoke(cli, ["--schedule", "step"])
    assert bad.exit_code == 2


def test_yaml_config_with_flags_on_top(tmp_path: Path, grammar_file: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"grammar": str(grammar_file), "steps": 9, "dim": 32}))
    resolved = resolve_config(
        config, None, False, {"steps": 3, "device": "cpu", "holdout_rule": "S -> A B"}
    )
    assert (resolved.steps, resolved.dim, resolved.device) == (3, 32, "cpu")
    assert resolved.holdout_rule == "S -> A B"
    with pytest.raises(CfglabError, match="--grammar"):
        resolve_config(None, None, False, {"steps": 3})


def test_train_json_gives_the_run_directory_and_final_metrics(tiny_run) -> None:
    out, record = tiny_run
    assert Path(record["run_dir"]) == out
    assert record["metrics"] == RunDir(out).metrics()[-1]
    assert record["metrics"]["step"] == 4  # the flag beat the YAML's 6
    stored = RunDir(out).read_config()
    assert (stored.steps, stored.lr, stored.dim) == (4, 0.002, 16)


def test_resume_takes_the_runs_config_and_new_flags(tiny_run) -> None:
    out, _ = tiny_run
    resolved = resolve_config(None, out, True, {"steps": 8})
    assert (resolved.steps, resolved.dim, resolved.lr) == (8, 16, 0.002)
    with pytest.raises(CfglabError, match="steps"):
        resolve_config(None, out, True, {"steps": 0})  # flags are validated on resume too


def test_attention_reads_the_step_it_is_given(tiny_run) -> None:
    out, _ = tiny_run
    args = ["attention", str(out), "--n", "2", "--json", "--device", "cpu", "--threads", "1"]
    result = CliRunner().invoke(app, [*args, "--step", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["step"] == 2
    missing = CliRunner().invoke(app, [*args, "--step", "3"])
    assert missing.exit_code != 0
    assert {"--device", "--step"} <= set(_options("probe"))


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("cfglab ")


def test_completion_is_on() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert "--install-completion" in result.output


def test_new_grammar_json(tmp_path: Path) -> None:
    args = ["new-grammar", "tiny", "--out-dir", str(tmp_path), "--seed", "3", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert Path(record["file"]) == tmp_path / "tiny.cfg" and (tmp_path / "tiny.cfg").exists()
    assert record["seed"] >= 3 and record["tries"] == record["seed"] - 2
    assert record["report"]["grammar"] == "tiny"


def test_sweep_takes_json() -> None:
    assert "--json" in _options("sweep") and "--json" in _options("report")


def test_a_bad_train_yaml_names_file_line_and_field(tmp_path: Path, grammar_file: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"grammar: {grammar_file}\npe: rott\nlayrs: 2\nsteps: 5\n")
    with pytest.raises(CfglabError) as e:
        resolve_config(config, None, False, {"lr": -1.0})
    text = str(e.value)
    assert f"{config}:2:5: pe:" in text and "pe: rott" in text  # the value, then its line
    assert f"{config}:3:1: layrs: unknown field" in text  # the key of an unknown field
    assert "\n  lr: " in text  # a flag's mistake has no line in the file


def test_model_fields_reach_the_model_from_flags(grammar_file: Path) -> None:
    from cfglab.models import build_model
    from cfglab.runs import model_config_for

    given = {"bias": False, "mlp_ratio": 2, "tie_weights": False, "pe": "rel", "max_rel": 5}
    config = resolve_config(None, None, False, {"grammar": str(grammar_file), **TINY, **given})
    model = build_model(model_config_for(config, 3))
    names = [name for name, _ in model.named_parameters()]
    assert not any(name.endswith(".bias") for name in names)
    assert model.lm_head.weight is not model.wte.weight
    assert model.blocks[0].mlp.c_fc.out_features == 2 * TINY["dim"]
    assert model.rel_emb.num_embeddings == 2 * 5
    options = _options("train")
    assert {"--bias", "--no-bias", "--rope-base", "--mlp-ratio", "--max-rel"} <= set(options)
