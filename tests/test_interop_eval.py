"""`cfglab evaluate --hf`: an outside model through the one evaluation path."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
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


def _emits_outside_ids(tmp, outside_logit: float = 4.0):
    """An export whose logits are the same at every position: 0 on the grammar's ids, and
    `outside_logit` on two ids the grammar does not know (the tokenizer's <mask> and one added
    token), so most draws are tokens outside the grammar (what an undertrained model emits)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cfglab.interop import export_run

    run = make_run(tmp, "abs", steps=2, perturb=False)
    hf_dir = tmp / "hf-outside"
    export_run(run, hf_dir)
    tok = AutoTokenizer.from_pretrained(hf_dir)
    tok.add_tokens(["<extra>"])
    model = AutoModelForCausalLM.from_pretrained(hf_dir)
    model.resize_token_embeddings(len(tok))
    outside = [tok.convert_tokens_to_ids(t) for t in ("<mask>", "<extra>")]
    with torch.no_grad():  # ln_f sends every state to e_0; logits = wte[:, 0] (tied head)
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.zero_()
        model.transformer.ln_f.bias[0] = 1.0
        model.transformer.wte.weight[:, 0] = 0.0
        model.transformer.wte.weight[outside, 0] = outside_logit
    model.save_pretrained(hf_dir)
    tok.save_pretrained(hf_dir)
    n_grammar = len(tok) - len(outside)  # terminals, <bos>, <eos>
    return hf_dir, tmp / "small.cfg", outside_logit, n_grammar


def test_hf_model_that_emits_ids_outside_the_grammar(tmp_path) -> None:
    """Issue 27: such an id ended in a raw IndexError. It is a stray (an invalid generation)
    and stray mass in KL, as in the native path; the CLI exits 0."""
    from cfglab.interop.hf_model import evaluate_hf

    hf_dir, grammar, logit, n_grammar = _emits_outside_ids(tmp_path)
    out = evaluate_hf(hf_dir, grammar, {**OPTS, "n": 32})
    p_outside = 2 * math.exp(logit) / (2 * math.exp(logit) + n_grammar)
    p_bos = 1 / (2 * math.exp(logit) + n_grammar)
    stray = out["kl"]["stray_mass"]
    assert stray["mean"] == pytest.approx(p_outside + p_bos, abs=1e-5)  # BOS is a stray too
    for cut in out["accuracy"].values():
        assert cut["accuracy"]["rate"] < 0.1  # almost every draw is stray on the first token
    res = CliRunner().invoke(
        app, ["evaluate", "--hf", str(hf_dir), "--grammar", str(grammar), "--n", "16", "--json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["kl"]["stray_mass"]["mean"] == pytest.approx(stray["mean"])


@pytest.mark.parametrize("damage", ["empty_config", "bad_weights", "no_tokenizer", "not_causal"])
def test_hf_directory_that_cannot_be_evaluated_is_a_clear_error(exported, tmp_path, damage):
    """No raw traceback for any model directory."""
    import shutil

    _, hf_dir, grammar = exported
    bad = tmp_path / "bad"
    shutil.copytree(hf_dir, bad)
    if damage == "empty_config":
        (bad / "config.json").write_text("{}")
    elif damage == "bad_weights":
        (bad / "model.safetensors").write_bytes(b"\x00" * 64)
    elif damage == "no_tokenizer":
        for f in bad.glob("*token*"):
            f.unlink()
    else:
        (bad / "config.json").write_text(json.dumps({"model_type": "t5"}))  # seq2seq only
    res = CliRunner().invoke(
        app, ["evaluate", "--hf", str(bad), "--grammar", str(grammar), "--n", "8", "--json"]
    )
    assert res.exit_code == 1
    assert isinstance(res.exception, CfglabError), repr(res.exception)
    said = str(res.exception)
    assert "no single token for a, b, c" in said if damage == "no_tokenizer" else str(bad) in said
