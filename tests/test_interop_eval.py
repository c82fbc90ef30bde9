"""`cfglab evaluate --hf`: an outside model through the one evaluation path."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from cfglab.cli import app
from cfglab.errors import CfglabError
from tests.test_interop import GRAMMAR, make_run

os.environ.setdefault("HF_HUB_OFFLINE", "1")

OPTS = {"n": 24, "seed": 5, "temperatures": [0.5, 1.0], "write": False}


def _exported(tmp, pe: str):
    from cfglab.interop import export_run

    run = make_run(tmp, pe, steps=60, perturb=False, lr=1e-2, dim=32)
    export_run(run, tmp / f"hf-{pe}")
    return run, tmp / f"hf-{pe}", tmp / "small.cfg"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A briefly trained rot run and its export (rot: decoding past the nominal context too)."""
    return _exported(tmp_path_factory.mktemp("hfeval"), "rot")


@pytest.mark.parametrize("pe", ["rot", "abs"])
def test_hf_evaluation_equals_the_native_one(exported, tmp_path, pe) -> None:
    """abs also checks the position limit: GPT-2's n_positions stands in for cfglab's context."""
    from cfglab.evaluate.run import evaluate_run
    from cfglab.interop.hf_model import HF_SECTIONS, evaluate_hf

    run, hf_dir, grammar = exported if pe == "rot" else _exported(tmp_path, "abs")
    native = evaluate_run(run, {**OPTS, "sections": list(HF_SECTIONS)})
    outside = evaluate_hf(hf_dir, grammar, OPTS)
    assert abs(native["kl"]["mean"] - outside["kl"]["mean"]) < 1e-3
    for cut, acc in native["accuracy"].items():
        assert outside["accuracy"][cut]["accuracy"] == acc["accuracy"], cut  # k, n and interval
    ent_n, ent_o = native["diversity"]["entropy"], outside["diversity"]["entropy"]
    assert ent_n["n"] == ent_o["n"] and abs(ent_n["gap"] - ent_o["gap"]) < 1e-3
    rows_n = native["robustness"]["by_temperature"]
    rows_o = outside["robustness"]["by_temperature"]
    assert [r["repaired"] for r in rows_n] == [r["repaired"] for r in rows_o]
    arch = {"rot": "GPTNeoXForCausalLM", "abs": "GPT2LMHeadModel"}[pe]
    assert outside["hf"]["architecture"] == arch
    assert outside["robustness"]["mode_switch"]["train_noise_rate"] is None


def test_cli_with_a_token_map_for_other_token_names(exported, tmp_path) -> None:
    """Terminals named differently from the model's tokens: refused, then mapped."""
    run, hf_dir, _ = exported
    renamed = tmp_path / "renamed.cfg"
    renamed.write_text(GRAMMAR.replace('"a"', '"x"').replace('"b"', '"y"').replace('"c"', '"z"'))
    base = ["evaluate", "--hf", str(hf_dir), "--grammar", str(renamed), "--n", "8", "--json"]
    base += ["--sections", "kl", "--no-write"]
    res = CliRunner().invoke(app, base)
    assert res.exit_code == 1 and "no single token for x, y, z" in str(res.exception)
    tmap = tmp_path / "map.yaml"
    tmap.write_text("x: a\ny: b\nz: 2\n")  # a token string or an id
    res = CliRunner().invoke(app, [*base, "--token-map", str(tmap)])
    assert res.exit_code == 0, res.output
    via_map = json.loads(res.stdout)
    res = CliRunner().invoke(
        app, ["evaluate", str(run), "--n", "8", "--json", "--sections", "kl", "--no-write"]
    )
    assert abs(json.loads(res.stdout)["kl"]["mean"] - via_map["kl"]["mean"]) < 1e-3
    tmap.write_text("w: a\n")
    res = CliRunner().invoke(app, [*base, "--token-map", str(tmap)])
    assert res.exit_code == 1 and "unknown key(s) w" in str(res.exception)


def test_hf_refuses_sections_that_need_a_run_and_bad_arguments(exported) -> None:
    from cfglab.interop.hf_model import evaluate_hf

    _, hf_dir, grammar = exported
    with pytest.raises(CfglabError, match="memorisation need"):
        evaluate_hf(hf_dir, grammar, {**OPTS, "sections": ["memorisation"]})
    with pytest.raises(CfglabError, match="not a Hugging Face model directory"):
        evaluate_hf(grammar.parent, grammar, OPTS)
    res = CliRunner().invoke(app, ["evaluate", "--hf", str(hf_dir)])
    assert res.exit_code == 1 and "--grammar" in str(res.exception)
