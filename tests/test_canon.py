"""Canon layers (Part 4.1), NoPE and partial RoPE: the layer against a reference convolution,
causality and the restart at BOS, cached decoding, resume, and every new cell end to end."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cfglab.errors import CfglabError
from cfglab.models import ModelConfig, build_model
from cfglab.models.canon import Canon, restarts
from cfglab.runs import TrainConfig, load_run
from cfglab.train import train
from tests.test_train import GRAMMAR, Interrupt, _losses

BOS = 6  # the test models' BOS id (vocabulary of 9)

# every new cell: (pe, canon, rope_dim)
CELLS = [
    ("none", "", None),
    ("rot", "", 4),
    ("rot", "ABCD", None),
    ("none", "ABCD", None),
    ("uni", "ABCD", None),
]


def reference(x: torch.Tensor, weight: torch.Tensor, residual: bool) -> torch.Tensor:
    """The convolution as torch spells it: conv1d over (B, W, T) with K-1 zeros on the left."""
    K = weight.size(-1)
    y = F.conv1d(F.pad(x.transpose(1, 2), (K - 1, 0)), weight, groups=x.size(-1)).transpose(1, 2)
    return x + y if residual else y


@settings(max_examples=30, deadline=None)
@given(
    width=st.integers(1, 12),
    kernel=st.integers(1, 6),
    T=st.integers(1, 20),
    residual=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_canon_is_the_reference_convolution_in_values_and_gradients(
    width: int, kernel: int, T: int, residual: bool, seed: int
) -> None:
    torch.manual_seed(seed)
    layer = Canon(width, kernel, residual).double()
    x = torch.randn(2, T, width, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, T, width, dtype=torch.float64)
    out = layer(x)
    ref = reference(x, layer.conv.weight, residual)
    torch.testing.assert_close(out, ref)
    dx, dw = torch.autograd.grad((out * g).sum(), (x, layer.conv.weight))
    rx, rw = torch.autograd.grad((ref * g).sum(), (x, layer.conv.weight))
    torch.testing.assert_close(dx, rx)
    torch.testing.assert_close(dw, rw)


def test_default_init_is_pytorchs_and_there_is_no_bias() -> None:
    layer = Canon(512, 4, True)
    assert layer.conv.bias is None and layer.conv.weight.shape == (512, 1, 4)
    bound = 1 / 4**0.5  # kaiming-uniform(a=√5) of a depthwise conv: U(-1/√K, 1/√K)
    w = layer.conv.weight
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound


@settings(max_examples=30, deadline=None)
@given(
    cuts=st.lists(st.integers(1, 23), max_size=4, unique=True),
    kernel=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_at_a_bos_the_convolution_restarts_as_if_the_string_began_the_window(
    cuts: list[int], kernel: int, seed: int
) -> None:
    """A packed window = its strings each convolved on their own (zeros before each BOS), in
    values and in gradients (the hand-written backward's cut taps)."""
    torch.manual_seed(seed)
    _assert_restarts_per_string(Canon(5, kernel, True).double(), 24, cuts, torch.float64)


def _assert_restarts_per_string(layer: Canon, T: int, cuts: list[int], dtype: torch.dtype) -> None:
    """The layer over two packed rows = each string convolved on its own, values and gradients:
    row 0 has a BOS at 0 and at `cuts`, row 1 none at 0 and at most one inside."""
    W, kernel = layer.conv.weight.size(0), layer.kernel
    x = torch.randn(2, T, W, dtype=dtype, requires_grad=True)
    g = torch.randn(2, T, W, dtype=dtype)
    inside = [c for c in cuts if c < T]
    resets = torch.zeros(2, T, dtype=torch.bool)
    resets[0, [0, *inside]] = True
    resets[1, inside[:1]] = True
    out = layer(x, restarts(resets, kernel))
    ref = torch.cat([_per_string(x[r : r + 1], resets[r], layer.conv.weight) for r in (0, 1)])
    torch.testing.assert_close(out, ref)
    got = torch.autograd.grad((out * g).sum(), (x, layer.conv.weight))
    want = torch.autograd.grad((ref * g).sum(), (x, layer.conv.weight))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


def _per_string(x: torch.Tensor, flags: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    T = x.size(1)
    starts = sorted({0, *flags.nonzero()[:, 0].tolist()}) + [T]
    pieces = [reference(x[:, a:b], weight, True) for a, b in itertools.pairwise(starts)]
    return torch.cat(pieces, dim=1)


def _model(pe: str, canon: str = "ABCD", rope_dim: int | None = None):
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=9,
        context=32,
        n_layer=2,
        n_head=2,
        n_embd=16,
        pe=pe,
        canon=canon,
        rope_dim=rope_dim,
        bos_id=BOS,
    )
    return build_model(cfg).eval()


def _window(T: int = 20, bos_at: tuple[int, ...] = (0, 7, 12)) -> torch.Tensor:
    idx = torch.randint(0, 6, (3, T), generator=torch.Generator().manual_seed(1))
    idx[:, list(bos_at)] = BOS
    return idx


DECODERS = ["abs", "rel", "rot", "pos", "uni", "none"]


@pytest.mark.parametrize("pe", DECODERS)
def test_later_tokens_never_change_earlier_logits_also_across_a_bos(pe: str) -> None:
    model, idx = _model(pe), _window()
    with torch.no_grad():
        logits = model(idx)[0]
        for t in (3, 7, 8, 15):  # 7: a BOS inside the window; 8: the token after it
            changed = idx.clone()
            changed[:, t + 1 :] = (changed[:, t + 1 :] + 1) % 6
            again = model(changed)[0]
            torch.testing.assert_close(again[:, : t + 1], logits[:, : t + 1])
            assert (again[:, t + 1 :] - logits[:, t + 1 :]).abs().max() > 1e-6


@pytest.mark.parametrize("pe", DECODERS)
def test_canon_a_after_a_bos_does_not_read_the_string_before(pe: str) -> None:
    """Layer 0's Canon-A sees the embeddings only: after the BOS at 7 its output is the same
    whatever came before, for the K-1 tokens the convolution would otherwise reach back (abs's
    position embeddings do not change: the positions stay)."""
    model, idx = _model(pe), _window()
    with torch.no_grad():
        first = _capture(model, idx, "blocks.0.hook_canon_a")
        changed = idx.clone()
        changed[:, 1:7] = (changed[:, 1:7] + 2) % 6
        again = _capture(model, changed, "blocks.0.hook_canon_a")
    torch.testing.assert_close(again[:, 7:], first[:, 7:])
    assert (again[:, 1:7] - first[:, 1:7]).abs().max() > 1e-6


def _capture(model, idx: torch.Tensor, name: str) -> torch.Tensor:
    from cfglab.models.hooks import capture

    with capture(model, [name]) as seen:
        model(idx)
    return seen[name]


@pytest.mark.parametrize("pe", DECODERS)
@pytest.mark.parametrize("canon", ["ABCD", "B", "D"])
def test_cached_decoding_equals_the_window_bos_inside_included(pe: str, canon: str) -> None:
    """Generation feeds tokens through the cache; training sees the whole window. With a BOS
    inside the window (position 7) the two agree at every position."""
    model, idx = _model(pe, canon, 4 if pe == "rot" else None), _window()
    with torch.no_grad():
        whole = model(idx)[0]
        cache = model.init_cache(3, 24)
        parts = [model.step(idx[:, a:b], cache) for a, b in ((0, 5), (5, 6), (6, 8), (8, 20))]
        # dropping a row mid-way (finished generations) keeps the others' state
        rows = torch.tensor([True, False, True])
        small = model.init_cache(3, 24)
        model.step(idx[:, :9], small)
        tail = model.step(idx[rows, 9:], small.select(rows))
    torch.testing.assert_close(torch.cat(parts, dim=1), whole, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(tail, whole[rows, 9:], atol=1e-5, rtol=1e-4)


def test_hook_points_name_every_place_and_patching_changes_the_output() -> None:
    model, idx = _model("rot"), _window()
    names = [f"blocks.{i}.hook_canon_{p}" for i in range(2) for p in "abcd"]
    with torch.no_grad():
        plain = model(idx)[0]
        from cfglab.models.hooks import capture

        with capture(model, names) as seen:
            model(idx)
        widths = [seen[n].shape[-1] for n in names[:4]]
        assert widths == [16, 48, 16, 64]  # A: C, B: q|k|v, C: C, D: the MLP's 4C
        handle = model.get_submodule("blocks.1.hook_canon_c").register_forward_hook(
            lambda m, i, o: torch.zeros_like(o)
        )
        patched = model(idx)[0]
        handle.remove()
    assert (patched - plain).abs().max() > 1e-4
    assert not hasattr(_model("rot", "AC").blocks[0], "hook_canon_b")


def test_partial_rope_turns_only_the_first_rope_dim_features() -> None:
    from cfglab.models.attention import Rotary

    rot = Rotary(4, 10000.0, 32)
    x = torch.randn(2, 9, 3, 8)
    y = rot(x, 5)
    torch.testing.assert_close(y[..., 4:], x[..., 4:])
    torch.testing.assert_close(y[..., :4], Rotary(4, 10000.0, 32)(x[..., :4].contiguous(), 5))
    assert (y[..., :4] - x[..., :4]).abs().max() > 1e-3
    # q.k of the turned part depends on the positions' difference only
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    a = (rot(q, 3) * rot(k, 1)).sum()
    b = (rot(q, 10) * rot(k, 8)).sum()
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"canon": "AE"}, 'subset of "ABCD"'),
        ({"canon": "AA"}, "a place repeats"),
        ({"canon": 4}, "canon must be a string"),
        ({"canon_kernel": 0}, "canon_kernel"),
    ],
)
def test_bad_canon_settings_are_refused_by_field(tmp_path: Path, fields: dict, message: str):
    from cfglab.runs import make_train_config

    with pytest.raises(CfglabError, match=message):
        make_train_config({"grammar": "g.cfg", **fields})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"pe": "rot", "rope_dim": 5}, "rope_dim must be even"),
        ({"pe": "rot", "rope_dim": 12}, "head size 8"),
        ({"pe": "abs", "rope_dim": 4}, "rope_dim applies to pe rot only"),
        ({"pe": "mlm", "canon": "A"}, "defined for decoders"),
    ],
)
def test_model_settings_that_cannot_build_are_refused(fields: dict, message: str) -> None:
    with pytest.raises(CfglabError, match=message):
        ModelConfig(vocab_size=9, n_head=2, n_embd=16, **fields)


def test_canon_is_normalised_to_the_papers_order() -> None:
    assert TrainConfig(grammar="g.cfg", canon="dcba").canon == "ABCD"
    assert TrainConfig(grammar="g.cfg", canon="ca").canon == "AC"
    assert TrainConfig(grammar="g.cfg").canon == ""


# --- through training, resume, generation, probes ---------------------------------------------


@pytest.fixture(scope="module")
def grammar_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("canon_g") / "small.cfg"
    p.write_text(GRAMMAR)
    return p


def _config(grammar_file: Path, **kw) -> TrainConfig:
    base = dict(
        grammar=str(grammar_file),
        layers=1,
        heads=2,
        dim=16,
        context=32,
        batch=4,
        steps=12,
        lr=3e-3,
        checkpoint_every=6,
        eval_every=6,
        log_every=1,
        eval_batches=1,
        threads=1,
        chunk_strings=32,
    )
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("pe", ["rot", "none"])
def test_resume_with_canon_reproduces_the_uninterrupted_curve(
    tmp_path: Path, grammar_file: Path, pe: str
) -> None:
    cfg = _config(grammar_file, pe=pe, canon="ABCD", dropout=0.1, align_windows=False)
    whole = train(cfg, tmp_path / "whole", quiet=True)

    def stop_at_9(event: dict) -> None:
        if event["step"] >= 9:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, tmp_path / "cut", quiet=True, callback=stop_at_9)
    train(cfg, tmp_path / "cut", quiet=True, resume=True)
    assert _losses(tmp_path / "cut") == _losses(whole)


@pytest.fixture(scope="module")
def cell_runs(tmp_path_factory: pytest.TempPathFactory, grammar_file: Path) -> dict[tuple, Path]:
    root = tmp_path_factory.mktemp("canon_cells")
    return {
        cell: train(
            _config(grammar_file, pe=cell[0], canon=cell[1], rope_dim=cell[2], steps=6),
            root / "-".join(str(c) for c in cell),
            quiet=True,
        )
        for cell in CELLS
    }


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: f"{c[0]}-{c[1] or 'nocanon'}-{c[2]}")
def test_every_new_cell_generates_evaluates_and_probes(cell_runs, cell: tuple) -> None:
    from cfglab.evaluate.run import evaluate_run
    from cfglab.interpret.attention import attention_run
    from cfglab.interpret.probes import probe_run

    run = cell_runs[cell]
    loaded = load_run(run)
    assert loaded.model.cfg.canon == cell[1] and loaded.model.cfg.rope_dim == cell[2]
    ev = evaluate_run(
        run, {"n": 6, "cut": 2, "sections": ["accuracy", "kl"], "threads": 1, "write": False}
    )
    assert ev["accuracy"]["cut0"]["accuracy"]["n"] == 6 and ev["kl"]["mean"] >= 0.0
    probes = probe_run(str(run), n_strings=16, n_test=8, seed=1, controls=False, plots=False)
    assert set(probes["trained"]) == {"0", "1"}
    att = attention_run(str(run), n_strings=8, plots=False)
    if cell[0] == "uni":
        assert att["meaningful"] is False
    if cell[1]:
        assert "outside attention" in att["note"] and att["canon"] == cell[1]
    else:
        assert "note" not in att


@pytest.mark.parametrize("cell", [c for c in CELLS if c[1] or c[0] == "none"])
def test_cells_with_no_stock_architecture_are_refused_with_the_way_out(
    cell_runs, cell: tuple, tmp_path: Path
) -> None:
    from cfglab.interop import export_run

    with pytest.raises(CfglabError, match="cannot be exported") as err:
        export_run(cell_runs[cell], tmp_path / "hf")
    assert "load_run" in str(err.value)
    assert not (tmp_path / "hf").exists()


def test_partial_rope_exports_to_neox_with_the_same_logits(cell_runs, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from cfglab.interop import export_run

    run = cell_runs[("rot", "", 4)]
    export_run(run, tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    native = load_run(run).model
    idx = torch.randint(
        0, native.cfg.vocab_size, (2, 20), generator=torch.Generator().manual_seed(2)
    )
    with torch.no_grad():
        assert (hf(idx).logits - native(idx)[0]).abs().max().item() < 1e-4


@pytest.mark.parametrize("pe", ["none", "rot"])
def test_cli_trains_and_evaluates_canon_abcd(tmp_path: Path, grammar_file: Path, pe: str) -> None:
    from cfglab.cli import app

    out = tmp_path / pe
    args = ["train", "--grammar", str(grammar_file), "--pe", pe, "--canon", "ABCD"]
    args += ["--layers", "1", "--heads", "2", "--dim", "16", "--context", "32", "--batch", "4"]
    args += ["--steps", "4", "--threads", "1", "--out", str(out), "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert load_run(out).model.cfg.canon == "ABCD"
    ev = ["evaluate", str(out), "--n", "6", "--cut", "2", "--threads", "1", "--json"]
    res = CliRunner().invoke(app, [*ev, "--sections", "accuracy,kl"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout[res.stdout.index("{") :])
    assert result["accuracy"]["cut0"]["accuracy"]["n"] == 6 and result["kl"]["mean"] >= 0.0
    bad = CliRunner().invoke(app, [*args[:5], "--canon", "ABX", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 1 and isinstance(bad.exception, CfglabError)
    assert 'subset of "ABCD"' in str(bad.exception) and "canon" in str(bad.exception)


@settings(max_examples=20, deadline=None)
@given(kernel=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_the_compiled_path_computes_the_same_convolution(kernel: int, seed: int) -> None:
    """`masked_taps` (the plain ops torch.compile fuses, dense keep mask) = the eager Function
    (sparse cut triples), with BOS flags anywhere."""
    from cfglab.models.canon import CausalDepthwise, masked_taps

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 17, 6, dtype=torch.float64, generator=gen)
    w = torch.randn(6, kernel, dtype=torch.float64, generator=gen)
    cuts = restarts(torch.rand(3, 17, generator=gen) < 0.25, kernel)
    torch.testing.assert_close(masked_taps(x, w, cuts.keep()), CausalDepthwise.apply(x, w, cuts))


@pytest.mark.slow
def test_a_compiled_canon_model_gives_the_eager_loss_and_gradients() -> None:
    from cfglab.train import cxx_compiler

    if cxx_compiler() is None:
        pytest.skip("torch.compile on CPU needs a C++ compiler")
    model, idx = _model("rot").train(), _window()
    compiled = torch.compile(model)
    eager_loss = model(idx, idx)[1]
    eager_grads = torch.autograd.grad(eager_loss, list(model.parameters()))
    loss = compiled(idx, idx)[1]
    grads = torch.autograd.grad(loss, list(model.parameters()))
    torch.testing.assert_close(loss, eager_loss, atol=1e-5, rtol=1e-4)
    for a, b in zip(grads, eager_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def _native_or_skip() -> None:
    from cfglab.compiler import cxx_compiler
    from cfglab.models import canon_native

    if cxx_compiler() is None:
        pytest.skip("the fused Canon loop needs a C++ compiler (the torch path is tested above)")
    assert canon_native.library() is not None, "a compiler is here, so the loop must build"


@settings(max_examples=30, deadline=None)
@given(
    width=st.integers(1, 40),
    kernel=st.integers(1, 6),
    T=st.integers(1, 30),
    cuts=st.lists(st.integers(1, 29), max_size=4, unique=True),
    seed=st.integers(0, 2**16),
)
def test_the_fused_loop_is_the_reference_convolution_restarts_included(
    width: int, kernel: int, T: int, cuts: list[int], seed: int
) -> None:
    """canon_kernel.cpp in fp32 = conv1d string by string (zeros before each BOS), in values and
    in gradients of x and of the weights."""
    from cfglab.models import canon_native

    _native_or_skip()
    torch.manual_seed(seed)
    assert canon_native.supports(torch.zeros(1, 1, width))  # fp32 on CPU: the fused loop runs
    _assert_restarts_per_string(Canon(width, kernel, True), T, cuts, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_fused_loop_matches_the_torch_path_on_many_threads(monkeypatch, dtype) -> None:
    """bf16 storage (what autocast hands Canon B and D) and a batch split over 2 threads give
    the torch path's numbers to rounding; the torch path is what CFGLAB_CANON_NATIVE=0 runs."""
    from cfglab.models import canon_native
    from cfglab.models.canon import CausalDepthwise

    _native_or_skip()
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 64, 512, generator=gen).to(dtype).requires_grad_()
    w = torch.randn(512, 4, generator=gen, requires_grad=True)
    g = torch.randn(4, 64, 512, generator=gen).to(dtype)
    cuts = restarts(torch.rand(4, 64, generator=gen) < 0.1, 4)
    threads = torch.get_num_threads()
    results = []
    try:
        for native, n in (("1", 2), ("0", 1)):
            monkeypatch.setenv("CFGLAB_CANON_NATIVE", native)
            torch.set_num_threads(n)
            assert canon_native.supports(x) is (native == "1")
            out = CausalDepthwise.apply(x, w, cuts)
            results.append((out, *torch.autograd.grad((out.float() * g.float()).sum(), (x, w))))
    finally:
        torch.set_num_threads(threads)
    tol = {"atol": 2e-2, "rtol": 1e-2} if dtype == torch.bfloat16 else {}
    for a, b in zip(*results, strict=True):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, **tol)


def test_without_a_compiler_canon_falls_back_to_torch_with_a_warning(
    monkeypatch, tmp_path: Path, caplog
) -> None:
    from cfglab.models import canon_native

    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no g++, no clang++
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # nothing built before
    canon_native.library.cache_clear()
    try:
        x = torch.randn(2, 9, 5, requires_grad=True)
        with caplog.at_level("WARNING", logger="cfglab.models.canon_native"):
            assert not canon_native.supports(x)
        assert "slower torch path" in caplog.text and "compiler" in caplog.text
        layer = Canon(5, 4, True)
        torch.testing.assert_close(layer(x), reference(x, layer.conv.weight, True))
    finally:
        canon_native.library.cache_clear()  # later tests build (or load) the real one


def test_the_loop_is_built_once_and_cached_by_source_compiler_and_cpu(
    monkeypatch, tmp_path: Path
) -> None:
    from cfglab.models import canon_native

    _native_or_skip()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    canon_native.library.cache_clear()
    try:
        first = canon_native._build()
        stamp = first.stat().st_mtime_ns
        assert first.parent == tmp_path / "cfglab" and canon_native.library() is not None
        assert canon_native._build() == first and first.stat().st_mtime_ns == stamp  # not rebuilt
        assert list(first.parent.iterdir()) == [first]  # no temporary left beside it
    finally:
        canon_native.library.cache_clear()
