"""The traps a newcomer hits, closed: a context too short for the grammar, --resume with a
changed config, a missing interop package, and `sweep --storage`."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import tomllib
from typer.testing import CliRunner

from cfglab.cli import app
from cfglab.errors import CfglabError
from cfglab.grammar.dsl import load_grammar
from cfglab.runs import TrainConfig
from cfglab.train import context_warning, train

ROOT = Path(__file__).resolve().parents[1]
CFG3F = ROOT / "grammars" / "cfg3f.cfg"
TINY = dict(layers=1, heads=1, dim=8, batch=2, steps=2, threads=1, chunk_strings=8)
TINY |= dict(checkpoint_every=2, eval_every=2, eval_batches=1, log_every=1)


def test_context_too_short_for_every_string_says_the_fix() -> None:
    from cfglab.analysis.graph import shortest

    g = load_grammar(CFG3F)
    n = shortest(g)[g.start]
    assert n >= 64  # the paper's cfg3f: every string is at least 64 tokens
    message = context_warning(g, 32)
    assert message is not None
    assert f"shortest has {n} tokens" in message and f"--context {n + 2}" in message
    assert context_warning(g, n + 2) is None
    assert context_warning(g, n + 1) is not None  # BOS and EOS need room too


def test_train_cli_warns_on_a_short_context(tmp_path: Path) -> None:
    args = ["train", "--grammar", str(CFG3F), "--context", "32", "--out", str(tmp_path / "r")]
    args += [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()] + ["-q"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "warning:" in res.output and "--context 66" in res.output.replace("\n", " ")


def test_resume_with_a_changed_config_names_the_fields(tmp_path: Path) -> None:
    grammar = ROOT / "grammars" / "mini.cfg"
    cfg = TrainConfig(grammar=str(grammar), context=64, **TINY)
    train(cfg, tmp_path / "r", quiet=True)
    changed = cfg.model_copy(update={"lr": 0.01, "dim": 16, "threads": 2})
    with pytest.raises(CfglabError) as e:
        train(changed, tmp_path / "r", resume=True, quiet=True)
    text = str(e.value)
    assert "--lr: run has 0.0003, given 0.01" in text and "--dim: run has 8, given 16" in text
    assert "--threads" not in text  # threads may change between sessions


def test_a_missing_interop_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from cfglab.interop.extra import require

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda m, *a: None if m == "transformers" else real(m, *a)
    )
    with pytest.raises(CfglabError, match=r"needs transformers.*pip install -e \.\[interop\]"):
        require("torch", "transformers", what="exporting")
    require("torch", what="anything")  # an installed one passes


def test_the_interop_extra_lists_its_packages_and_dev_keeps_them() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for package in ("transformers", "transformer-lens", "nnsight"):
        assert any(d.startswith(package + ">") for d in extras["interop"]), package
        assert any(d.startswith(package + ">") for d in extras["dev"]), package


def test_sweep_storage_overrides_the_file(tmp_path: Path) -> None:
    from cfglab.cli.sweep_cmds import resume_command, with_storage
    from cfglab.sweep.spec import load_sweep
    from cfglab.sweep.tune import sweep_dir_for

    loaded = load_sweep(ROOT / "sweeps" / "quick.yaml")
    moved = with_storage(loaded, tmp_path / "elsewhere")
    assert sweep_dir_for(moved) == (tmp_path / "elsewhere").resolve() / loaded.name
    assert sweep_dir_for(loaded) != sweep_dir_for(moved)
    again = resume_command(Path("sweeps/quick.yaml"), False, None, tmp_path / "elsewhere")
    assert again.endswith(f"--storage {tmp_path / 'elsewhere'}")
    help_text = CliRunner().invoke(app, ["sweep", "--help"]).output
    assert "--storage" in help_text


# --- --extend-steps -------------------------------------------------------------------------
def _extendable(tmp_path: Path, name: str) -> tuple[TrainConfig, Path]:
    """A finished 4-step run (a checkpoint and a metrics line every step)."""
    from tests.eval_support import tiny_config

    cfg = tiny_config(ROOT / "grammars" / "mini.cfg", steps=4, checkpoint_every=1)
    cfg = cfg.model_copy(update={"eval_every": 1, "log_every": 1, "keep_checkpoints": 20})
    train(cfg, tmp_path / name, quiet=True)
    return cfg, tmp_path / name


def test_extend_steps_trains_a_finished_run_on(tmp_path: Path) -> None:
    from cfglab.runs import RunDir, checkpoint_step, read_weights_config
    from cfglab.train import learning_rate

    cfg, out = _extendable(tmp_path, "r")
    run = RunDir(out)
    assert [checkpoint_step(p) for p in run.checkpoints()] == [1, 2, 3, 4]
    train(cfg, out, resume=True, quiet=True, extend_to=8)
    assert run.read_config().steps == 8  # a later plain --resume goes on to 8 as well
    assert [checkpoint_step(p) for p in run.checkpoints()] == list(range(1, 9))
    assert [m["step"] for m in run.metrics()] == list(range(1, 9))
    assert read_weights_config(run)["step"] == 8  # model.safetensors is the new last step
    # the schedule is re-stretched to 8 steps from the checkpoint: step 5 ran at the rate of
    # an 8-step run's step 4, not at the 4-step run's end rate
    lr = {m["step"]: m["lr"] for m in run.metrics()}
    longer = cfg.model_copy(update={"steps": 8})
    assert lr[5] == pytest.approx(learning_rate(longer, 4)) and lr[5] > learning_rate(cfg, 4)
    assert lr[4] == pytest.approx(learning_rate(cfg, 3))  # the trained steps keep theirs
    card = json.loads(run.card_path.read_text())
    assert card["extensions"][0] | {"when": ""} == {
        "steps_before": 4,
        "steps": 8,
        "from_step": 4,
        "schedule": "re-stretched to the new total from the checkpoint",
        "when": "",
    }
    assert card["train"]["steps"] == 8


def test_an_interrupted_extension_resumes_exactly(tmp_path: Path) -> None:
    from cfglab.runs import RunDir

    cfg, whole = _extendable(tmp_path, "whole")
    train(cfg, whole, resume=True, quiet=True, extend_to=6)
    _, cut = _extendable(tmp_path, "cut")

    def stop_after_5(record: dict) -> None:
        if record["step"] == 5 and "checkpoint" in record:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, cut, resume=True, quiet=True, extend_to=6, callback=stop_after_5)
    assert RunDir(cut).metrics()[-1]["step"] == 5
    train(cfg.model_copy(update={"steps": 6}), cut, resume=True, quiet=True)  # no extend_to
    losses = [[m["loss"] for m in RunDir(r).metrics()] for r in (whole, cut)]
    assert len(losses[0]) == 6 and losses[0] == losses[1]


def test_extend_steps_refuses_what_would_not_extend(tmp_path: Path) -> None:
    cfg, out = _extendable(tmp_path, "r")
    for total in (4, 3):
        with pytest.raises(
            CfglabError, match=f"--extend-steps {total} would not extend.*more than 4"
        ):
            train(cfg, out, resume=True, quiet=True, extend_to=total)
    with pytest.raises(CfglabError, match="add --resume"):
        train(cfg, out, quiet=True, extend_to=8)
    with pytest.raises(CfglabError, match="holds none to extend"):
        train(cfg, tmp_path / "none", resume=True, quiet=True, extend_to=8)
    with pytest.raises(CfglabError, match=r"--steps: run has 4, given 8.*--extend-steps 8"):
        train(cfg.model_copy(update={"steps": 8}), out, resume=True, quiet=True)


def test_train_cli_extend_steps(tmp_path: Path) -> None:
    from cfglab.runs import RunDir

    _, out = _extendable(tmp_path, "r")
    res = CliRunner().invoke(
        app, ["train", "--out", str(out), "--resume", "--extend-steps", "6", "-q"]
    )
    assert res.exit_code == 0, res.output
    assert RunDir(out).metrics()[-1]["step"] == 6
    res = CliRunner().invoke(
        app, ["train", "--out", str(out), "--resume", "--extend-steps", "6", "-q"]
    )
    assert res.exit_code != 0 and "would not extend" in str(res.exception)
    assert "--extend-steps" in CliRunner().invoke(app, ["train", "--help"]).output


# --- Run.encode: BOS as training feeds it -------------------------------------------------------
def test_run_encode_is_what_the_training_stream_feeds(tmp_path: Path) -> None:
    import torch

    from cfglab.data.corpus import TokenStream
    from cfglab.data.vocab import Vocab
    from cfglab.runs import load_run

    cfg = TrainConfig(grammar=str(ROOT / "grammars" / "mini.cfg"), context=64, **TINY)
    train(cfg, tmp_path / "r", quiet=True)
    run = load_run(tmp_path / "r")
    c = run.config
    stream = TokenStream(run.grammar, c.seed, chunk_strings=c.chunk_strings, aligned=True)
    window = stream.batch(1, c.context)[0][0]  # the first training window: BOS x EOS ...
    vocab = Vocab(len(run.grammar.terminals))
    n = int(np.flatnonzero(window == vocab.eos)[0]) - 1  # x's length
    string = window[1 : n + 1]
    names = " ".join(run.grammar.decode(string))
    for given in (string, list(string), names, names.split()):
        idx = run.encode(given)
        assert idx.dtype == torch.long and idx.shape == (1, n + 1)
        assert idx[0].tolist() == window[: n + 1].tolist()
    assert run.encode(names, eos=True)[0].tolist() == window[: n + 2].tolist()
    with torch.no_grad():  # so the model reads the string as it did in training
        ours = run.model(run.encode(names))[0]
        trained = run.model(torch.as_tensor(window[None, : n + 1]))[0]
    assert torch.equal(ours, trained)


def test_run_encode_refuses_what_is_not_a_string(tmp_path: Path) -> None:
    from cfglab.runs import load_run

    cfg = TrainConfig(grammar=str(ROOT / "grammars" / "mini.cfg"), context=8, **TINY)
    train(cfg, tmp_path / "r", quiet=True)
    run = load_run(tmp_path / "r")
    t = run.grammar.terminals
    with pytest.raises(CfglabError, match=r"'zz' is not a terminal of grammar"):
        run.encode(f"{t[0]} zz")
    with pytest.raises(
        CfglabError, match=rf"id {len(t)} is not a terminal id.*BOS and EOS are added"
    ):
        run.encode([0, len(t)])  # BOS given by hand
    assert run.encode([t[0]] * 7).shape == (1, 8)
    with pytest.raises(CfglabError, match=r"9 tokens with BOS and EOS, longer than .* 8"):
        run.encode([t[0]] * 7, eos=True)
