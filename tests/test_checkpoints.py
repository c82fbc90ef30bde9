"""Safe checkpoints: weights_only loading, refusal of pickles that run code, safetensors weights."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest
import torch

from cfglab.errors import CfglabError
from cfglab.runs import RunDir, TrainConfig, latest_checkpoint, load_checkpoint, load_run
from cfglab.train import train

GRAMMAR = """grammar small
start S
S -> A B | B A A
A -> "1" "2" | "3" | B "1"
B -> "2" "2" "3" | "1"
"""


class _WritesAFile:
    """Unpickling this calls exec: what a malicious checkpoint would do."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (exec, (f"open({str(self.target)!r}, 'w').write('pwned')",))


@pytest.fixture
def trained(tmp_path: Path) -> Path:
    g = tmp_path / "small.cfg"
    g.write_text(GRAMMAR)
    cfg = TrainConfig(
        grammar=str(g),
        pe="abs",
        layers=1,
        heads=2,
        dim=16,
        context=32,
        batch=4,
        steps=12,
        checkpoint_every=6,
        eval_every=6,
        eval_batches=1,
        log_every=6,
        threads=1,
    )
    return train(cfg, tmp_path / "run", quiet=True)


def _craft(path: Path, payload: object) -> None:
    buf = io.BytesIO()
    torch.save({"step": 99, "model": payload}, buf)
    data = buf.getvalue()
    path.write_bytes(data)  # a matching checksum: an attacker writes both files
    path.with_name(path.name + ".sha256").write_text(hashlib.sha256(data).hexdigest())


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path, trained) -> None:
    target = tmp_path / "written_by_the_pickle.txt"
    evil = RunDir(trained).checkpoint_dir / "step_00000099.pt"
    _craft(evil, _WritesAFile(target))
    with pytest.raises(CfglabError, match=r"step_00000099\.pt: refused") as err:
        load_checkpoint(evil)
    assert "weights_only" in str(err.value)
    assert not target.exists()
    # the newest checkpoint is the crafted one: it is skipped with a warning, never executed
    with pytest.warns(UserWarning, match="refused"):
        path, state = latest_checkpoint(RunDir(trained))
    assert state["step"] == 12 and path.name == "step_00000012.pt"
    assert not target.exists()


def test_real_checkpoints_load_with_weights_only(trained) -> None:
    state = load_checkpoint(RunDir(trained).checkpoints()[-1])
    assert state["step"] == 12 and "optimizer" in state and "mask_rng" in state


def test_final_weights_as_safetensors_with_tied_head(trained) -> None:
    run = RunDir(trained)
    assert run.weights_path.exists()
    card = json.loads(run.weights_config_path.read_text())
    assert card["step"] == 12 and card["model"]["pe"] == "abs"
    from safetensors import safe_open

    with safe_open(str(run.weights_path), "pt") as f:
        keys = set(f.keys())
    assert len(keys & {"wte.weight", "lm_head.weight"}) == 1  # the tied pair stored once
    native = load_run(trained)
    assert native.model.lm_head.weight is native.model.wte.weight


def test_load_run_from_safetensors_alone_matches_the_checkpoint(tmp_path, trained) -> None:
    from_ckpt = load_run(trained, step=6)  # an older step: read from its checkpoint
    final = RunDir(trained).checkpoints()[-1]
    ref = load_checkpoint(final)["model"]
    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    shutil.rmtree(copy / "checkpoints")
    loaded = load_run(copy)
    assert loaded.step == 12 and from_ckpt.step == 6
    assert loaded.model.lm_head.weight is loaded.model.wte.weight
    for name, t in loaded.model.state_dict().items():
        assert torch.equal(t, ref[name]), name
    with pytest.raises(CfglabError, match="step_00000006"):
        load_run(copy, step=6)
