"""Export to Hugging Face and TransformerLens: the same logits as the native model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cfglab.cli import app
from cfglab.errors import CfglabError
from cfglab.runs import RunDir, TrainConfig, load_run, model_config_for, save_weights
from cfglab.train import train

os.environ.setdefault("HF_HUB_OFFLINE", "1")

GRAMMAR = """grammar small
start S
S -> A B | B A A
A -> "a" "b" | "c" | B "a"
B -> "b" "b" "c" | "a"
"""
TOL = 1e-4


def make_run(tmp_path: Path, pe: str, steps: int = 2, perturb: bool = True, **kw) -> Path:
    """A tiny run; `perturb` replaces every weight (LN gains and biases too) by noise, so that
    a mapping error anywhere shows in the logits."""
    g = tmp_path / "small.cfg"
    g.write_text(GRAMMAR)
    base = dict(
        grammar=str(g),
        pe=pe,
        layers=2,
        heads=2,
        dim=16,
        context=32,
        batch=4,
        steps=steps,
        checkpoint_every=steps,
        eval_every=steps,
        eval_batches=1,
        log_every=steps,
        threads=1,
    )
    cfg = TrainConfig(**{**base, **kw})
    run = train(cfg, tmp_path / f"run-{pe}", quiet=True)
    if perturb:
        loaded = load_run(run)
        gen = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for p in loaded.model.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
        mcfg = model_config_for(loaded.config, len(loaded.grammar.terminals))
        save_weights(RunDir(run), loaded.model, mcfg, loaded.step, loaded.grammar)
    return run


def _tokens(vocab_size: int, n: int = 3, t: int = 24) -> torch.Tensor:
    return torch.randint(0, vocab_size, (n, t), generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("pe", ["abs", "rot"])
def test_export_loads_with_auto_classes_and_gives_the_same_logits(tmp_path, pe) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = make_run(tmp_path, pe)
    out = tmp_path / "hf"
    res = CliRunner().invoke(app, ["export", str(run), str(out), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout[res.stdout.index("{") :])
    expected = {"abs": "GPT2LMHeadModel", "rot": "GPTNeoXForCausalLM"}[pe]
    assert info["architecture"] == expected and info["pe"] == pe
    hf = AutoModelForCausalLM.from_pretrained(out)
    assert type(hf).__name__ == expected
    native = load_run(run).model
    idx = _tokens(native.cfg.vocab_size)
    with torch.no_grad():
        diff = (hf(idx).logits - native(idx)[0]).abs().max().item()
    print(f"{pe}: HF max |dlogit| = {diff:.3g}")
    assert diff < TOL
    tok = AutoTokenizer.from_pretrained(out)
    enc = tok("a b c a")["input_ids"]
    assert enc == [3, 0, 1, 2, 0]  # <bos> first; terminals keep their grammar ids
    assert (tok.bos_token_id, tok.eos_token_id, tok.mask_token_id) == (3, 4, 5)
    assert tok.decode([0, 1, 2]) == "a b c"


@pytest.mark.parametrize("pe", ["abs", "rot"])
def test_transformer_lens_gives_the_same_logits(tmp_path, pe) -> None:
    from cfglab.interop import transformer_lens_model

    run = make_run(tmp_path, pe)
    tl = transformer_lens_model(run)
    native = load_run(run).model
    idx = _tokens(native.cfg.vocab_size)
    with torch.no_grad():
        logits, cache = tl.run_with_cache(idx)
        diff = (logits - native(idx)[0]).abs().max().item()
    print(f"{pe}: TransformerLens max |dlogit| = {diff:.3g}")
    assert diff < TOL
    pattern = cache["blocks.0.attn.hook_pattern"]  # TransformerLens's own hook names
    maps = native.attention_maps(idx)[0]
    assert (pattern - maps).abs().max().item() < TOL


def test_transformer_lens_hooked_transformer_numerics_keep_the_log_probabilities(tmp_path) -> None:
    from cfglab.interop import transformer_lens_model

    run = make_run(tmp_path, "rot")
    tl = transformer_lens_model(run, hooked_transformer_numerics=True)
    native = load_run(run).model
    idx = _tokens(native.cfg.vocab_size)
    with torch.no_grad():
        ours = native(idx)[0].log_softmax(-1)
        diff = (tl(idx).log_softmax(-1) - ours).abs().max().item()
    assert diff < TOL


def test_rotary_rows_must_be_permuted(tmp_path, monkeypatch) -> None:
    """The rot mapping is not exact by accident: without the rotate-half permutation it fails."""
    from cfglab.interop import export

    run = make_run(tmp_path, "rot")
    loaded = load_run(run)
    monkeypatch.setattr(export, "rotate_half_order", lambda hs: list(range(hs)))
    hf = export.to_hf(loaded)
    idx = _tokens(loaded.model.cfg.vocab_size)
    with torch.no_grad():
        assert (hf(idx).logits - loaded.model(idx)[0]).abs().max().item() > 1e-2


def test_briefly_trained_rot_run_exports_exactly(tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    run = make_run(tmp_path, "rot", steps=40, perturb=False, lr=1e-2)
    out = tmp_path / "hf"
    from cfglab.interop import export_run

    export_run(run, out)
    hf = AutoModelForCausalLM.from_pretrained(out)
    native = load_run(run).model
    idx = _tokens(native.cfg.vocab_size)
    with torch.no_grad():
        assert (hf(idx).logits - native(idx)[0]).abs().max().item() < TOL


@pytest.mark.parametrize("pe", ["rel", "pos", "uni", "mlm"])
def test_pes_without_a_stock_architecture_are_refused_with_the_way_out(tmp_path, pe) -> None:
    from cfglab.interop import export_run

    run = make_run(tmp_path, pe, perturb=False)
    with pytest.raises(CfglabError, match=f"pe {pe} cannot be exported") as err:
        export_run(run, tmp_path / "hf")
    assert "model.safetensors" in str(err.value) and "load_run" in str(err.value)
    assert not (tmp_path / "hf").exists()


def test_export_refuses_a_non_empty_directory(tmp_path) -> None:
    from cfglab.interop import export_run

    run = make_run(tmp_path, "abs", perturb=False)
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "x").write_text("keep me")
    with pytest.raises(CfglabError, match="not empty"):
        export_run(run, tmp_path / "hf")
