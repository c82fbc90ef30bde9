from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from cfglab.errors import CfglabError
from cfglab.runs import (
    RunDir,
    TrainConfig,
    latest_checkpoint,
    load_checkpoint,
    load_run,
    load_train_config,
)
from cfglab.train import cpu_has_native_bf16, learning_rate, train, uses_bf16

GRAMMAR = """grammar small
start S
S -> A B | B A A
A -> "1" "2" | "3" | B "1"
B -> "2" "2" "3" | "1"
"""


@pytest.fixture
def grammar_file(tmp_path: Path) -> Path:
    p = tmp_path / "small.cfg"
    p.write_text(GRAMMAR)
    return p


def _config(grammar_file: Path, **kw) -> TrainConfig:
    base = dict(
        grammar=str(grammar_file),
        pe="rot",
        layers=1,
        heads=2,
        dim=16,
        context=32,
        batch=4,
        steps=30,
        lr=3e-3,
        checkpoint_every=10,
        eval_every=5,
        log_every=1,
        eval_batches=1,
        threads=1,
        chunk_strings=32,
    )
    base.update(kw)
    return TrainConfig(**base)


def _losses(run: Path) -> list[tuple[int, float, float | None]]:
    return [(m["step"], m["loss"], m.get("val_loss")) for m in RunDir(run).metrics() if "loss" in m]


class Interrupt(Exception):
    pass


@pytest.mark.parametrize(("pe", "precision"), [("rot", "auto"), ("mlm", "auto"), ("abs", "bf16")])
def test_resumed_run_reproduces_the_uninterrupted_loss_curve(
    tmp_path, grammar_file, pe, precision
) -> None:
    cfg = _config(
        grammar_file, pe=pe, noise_fraction=0.3, noise_rate=0.2, dropout=0.1, precision=precision
    )
    whole = train(cfg, tmp_path / "whole", quiet=True)

    def stop_at_25(event: dict) -> None:
        if event["step"] >= 25:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, tmp_path / "cut", quiet=True, callback=stop_at_25)
    assert max(s for s, _, _ in _losses(tmp_path / "cut")) == 25
    train(cfg, tmp_path / "cut", quiet=True, resume=True)
    assert _losses(tmp_path / "cut") == _losses(whole)
    a = RunDir(whole).train_string_hashes()
    b = RunDir(tmp_path / "cut").train_string_hashes()
    assert len(a) > 0 and a.tolist() == b.tolist()


def test_run_directory_contents(tmp_path, grammar_file) -> None:
    run = RunDir(train(_config(grammar_file, keep_checkpoints=2), tmp_path / "r", quiet=True))
    assert [p.name for p in run.checkpoints()] == ["step_00000020.pt", "step_00000030.pt"]
    card = json.loads(run.card_path.read_text())
    assert card["parameters"] > 0 and card["torch"] and card["train"]["pe"] == "rot"
    m = run.metrics()
    assert {"step", "loss", "lr", "tokens_per_s"} <= set(m[0]) and m[-1]["step"] == 30
    assert any("val_loss" in r for r in m)
    assert yaml.safe_load(run.config_path.read_text())["grammar"] == str(grammar_file.resolve())
    loaded = load_run(run.path)
    assert loaded.step == 30 and loaded.grammar.name == "small"


AUTO_ON_CPU = "bf16" if cpu_has_native_bf16() else "none (fp32)"


@pytest.mark.parametrize(
    ("precision", "autocast"), [("auto", AUTO_ON_CPU), ("fp32", "none (fp32)"), ("bf16", "bf16")]
)
def test_cpu_precision_from_the_command_line(tmp_path, grammar_file, precision, autocast) -> None:
    """--precision reaches the run: its config, its card, and a loss that trains in bf16 too."""
    from typer.testing import CliRunner

    from cfglab.cli import app

    args = [
        "train",
        "--grammar",
        str(grammar_file),
        "--pe",
        "abs",
        "--layers",
        "1",
        "--heads",
        "2",
        "--dim",
        "16",
        "--context",
        "32",
        "--batch",
        "8",
        "--steps",
        "60",
        "--lr",
        "1e-2",
        "--threads",
        "1",
        "--precision",
        precision,
        "--out",
        str(tmp_path / "r"),
        "--quiet",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    run = RunDir(tmp_path / "r")
    assert run.read_config().precision == precision
    assert json.loads(run.card_path.read_text())["autocast"] == autocast
    losses = [loss for _, loss, _ in _losses(run.path)]  # one per 10 steps
    assert sum(losses[-2:]) / 2 < 0.85 * losses[0]


def test_corrupted_checkpoint_is_detected_and_the_previous_one_used(tmp_path, grammar_file) -> None:
    run = RunDir(train(_config(grammar_file), tmp_path / "r", quiet=True))
    newest = run.checkpoints()[-1]
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    with pytest.raises(CfglabError, match="corrupted"):
        load_checkpoint(newest)
    with pytest.warns(UserWarning, match="corrupted"):
        path, state = latest_checkpoint(run)
    assert path == run.checkpoints()[-2] and state["step"] == 20


def test_existing_run_needs_resume_and_same_config(tmp_path, grammar_file) -> None:
    cfg = _config(grammar_file, steps=10)
    train(cfg, tmp_path / "r", quiet=True)
    with pytest.raises(CfglabError, match="--resume"):
        train(cfg, tmp_path / "r", quiet=True)
    with pytest.raises(CfglabError, match="different configuration"):
        train(cfg.model_copy(update={"lr": 1e-2}), tmp_path / "r", quiet=True, resume=True)


def test_bad_config_file_names_the_field(tmp_path, grammar_file) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(f"grammar: {grammar_file}\npe: rott\nlayrs: 2\nsteps: -1\n")
    with pytest.raises(CfglabError) as e:
        load_train_config(p)
    text = str(e.value)
    assert "pe:" in text and "layrs: unknown field" in text and "steps:" in text


def test_learning_rate_schedule() -> None:
    cfg = TrainConfig(grammar="x", lr=1.0, min_lr=0.0, steps=100, warmup=10)
    assert learning_rate(cfg, 0) == pytest.approx(0.1)
    assert learning_rate(cfg, 10) == pytest.approx(1.0)
    assert learning_rate(cfg, 55) == pytest.approx(0.5)
    assert learning_rate(cfg, 100) == pytest.approx(0.0)


@pytest.mark.slow
def test_cli_run_killed_at_any_moment_resumes_to_the_same_curve(tmp_path, grammar_file) -> None:
    args = [
        sys.executable,
        "-m",
        "cfglab",
        "train",
        "--grammar",
        str(grammar_file),
        "--pe",
        "abs",
        "--layers",
        "1",
        "--heads",
        "2",
        "--dim",
        "16",
        "--context",
        "32",
        "--batch",
        "8",
        "--steps",
        "3000",
        "--checkpoint-every",
        "100",
        "--threads",
        "1",
        "--quiet",
    ]
    subprocess.run(args + ["--out", str(tmp_path / "whole")], check=True, capture_output=True)
    proc = subprocess.Popen(args + ["--out", str(tmp_path / "cut")])
    run = RunDir(tmp_path / "cut")
    # kill mid-run, between two checkpoints, wherever the writer happens to be
    while not (run.checkpoints() and run.metrics() and run.metrics()[-1]["step"] >= 1250):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = run.metrics()
    assert done and done[-1]["step"] < 3000  # really interrupted
    subprocess.run(
        args + ["--out", str(tmp_path / "cut"), "--resume"], check=True, capture_output=True
    )
    assert _losses(tmp_path / "cut") == _losses(tmp_path / "whole")


def test_a_half_written_metrics_line_is_ignored_and_resume_still_works(
    tmp_path, grammar_file
) -> None:
    cfg = _config(grammar_file)
    train(cfg, tmp_path / "whole", quiet=True)

    def stop_at_15(event: dict) -> None:
        if event["step"] >= 15:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, tmp_path / "cut", quiet=True, callback=stop_at_15)
    run = RunDir(tmp_path / "cut")
    with open(run.metrics_path, "a") as f:
        f.write('{"step": 16, "lo')  # what a SIGKILL mid-write leaves
    assert run.metrics()[-1]["step"] == 15
    train(cfg, tmp_path / "cut", quiet=True, resume=True)
    assert _losses(tmp_path / "cut") == _losses(tmp_path / "whole")


def test_divergence_is_caught_at_a_logged_step(tmp_path, grammar_file) -> None:
    """The loss is read on logged steps only (no host sync per step); a blow-up still stops the
    run, with the step where it was seen."""
    cfg = _config(grammar_file, lr=1e30, grad_clip=0.0, log_every=5, eval_every=1000)
    with pytest.raises(CfglabError, match=r"loss became (nan|inf) by step \d*[05]\b"):
        train(cfg, tmp_path / "run", quiet=True)


def test_cpu_optimizer_is_fused_too(grammar_file) -> None:
    """One kernel for every tensor on CPU as on CUDA (2x the per-tensor loop on CPU); biases and
    norms are not decayed."""
    from cfglab.models import build_model
    from cfglab.runs import model_config_for
    from cfglab.train import _optimizer

    cfg = _config(grammar_file)
    opt = _optimizer(build_model(model_config_for(cfg, 3)), cfg)
    assert opt.defaults["fused"] is True
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == cfg.weight_decay and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(
        p.dim() < 2 for p in no_decay["params"]
    )


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_optimizer_is_fused(grammar_file) -> None:
    from cfglab.models import build_model
    from cfglab.runs import model_config_for
    from cfglab.train import _optimizer

    cfg = _config(grammar_file)
    opt = _optimizer(build_model(model_config_for(cfg, 3)).cuda(), cfg)
    assert opt.defaults["fused"]


@pytest.mark.slow
def test_compiled_model_trains_like_eager_and_saves_eager_keys(tmp_path, grammar_file) -> None:
    eager = train(_config(grammar_file, steps=10), tmp_path / "eager", quiet=True)
    compiled = train(_config(grammar_file, steps=10, compile=True), tmp_path / "c", quiet=True)
    a, b = _losses(eager), _losses(compiled)
    assert [s for s, *_ in a] == [s for s, *_ in b]
    assert all(abs(x[1] - y[1]) < 1e-3 for x, y in zip(a, b))
    found = latest_checkpoint(RunDir(compiled))
    assert found is not None
    _, state = found
    assert not any(k.startswith("_orig_mod") for k in state["model"])
    load_run(compiled)  # the run directory reads back as an ordinary eager model
    assert json.loads(RunDir(compiled).card_path.read_text())["compiled"] is True


def test_compile_without_a_cxx_compiler_trains_eagerly(grammar_file, tmp_path, monkeypatch) -> None:
    from cfglab.train import compiles, cxx_compiler

    cpu = torch.device("cpu")
    cfg = _config(grammar_file, compile=True)
    assert not compiles(_config(grammar_file), cpu)  # not asked for
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no g++, no clang++
    assert cxx_compiler() is None
    with pytest.warns(UserWarning, match="no C.. compiler"):
        assert not compiles(cfg, cpu)
    assert compiles(cfg, torch.device("cuda"))  # only CPU is checked: GPU hosts have a toolchain
    fake = tmp_path / "my-c++"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CXX", "my-c++")
    assert cxx_compiler() == str(fake) and compiles(cfg, cpu)


@pytest.mark.parametrize(
    ("line", "native"),
    [
        ("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni", True),  # AMD EPYC (Zen 4)
        ("flags\t\t: fpu sse2 avx2 avx512f amx_bf16 amx_tile amx_int8", True),  # Intel Xeon, AMX
        ("flags\t\t: fpu sse2 avx2 avx512f avx512bw", False),  # AVX-512 without bf16: emulated
        ("Features\t: fp asimd bf16 i8mm", True),  # Arm with the BF16 extension
        ("Features\t: fp asimd", False),
    ],
)
def test_auto_precision_is_bf16_only_where_the_cpu_has_bf16(tmp_path, line, native) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: some cpu bf16-free name\n{line}\n")
    assert cpu_has_native_bf16(cpuinfo) is native
    assert cpu_has_native_bf16(tmp_path / "absent") is False  # not Linux: fp32


def test_auto_precision_resolves_per_device() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert uses_bf16("auto", cuda) and uses_bf16("bf16", cpu)
    assert not uses_bf16("fp32", cuda) and not uses_bf16("fp32", cpu)
    assert uses_bf16("auto", cpu) is cpu_has_native_bf16()
