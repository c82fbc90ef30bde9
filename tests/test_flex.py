"""FlexAttention paths of rel and pos (cfglab/models/flex.py) against the explicit path.

On CPU FlexAttention runs forward only (torch 2.13 has no CPU backward), so the values are checked
through FlexAttention itself, and the gradients through a dense evaluation of the same score_mod
and block mask (what FlexAttention computes, by definition), which checks the score_mod's gathers
and tables. On CUDA the fused kernel is checked in values and gradients.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from cfglab.models import ModelConfig, build_model
from cfglab.models import flex as flex_module
from cfglab.models.attention import PositionAttention, RelativeAttention

# Eager FlexAttention on CPU (the forward tests) warns that it is not the fused kernel: known.
pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CASES = [("rel", "abs", 4), ("rel", "abs", 64), ("mlm", "rel", 4), ("pos", "abs", 4)]
IDS = ["rel", "rel-unclipped", "mlm-rel", "pos"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def model(pe: str, mlm_pe: str, max_rel: int, context: int = 24, device: str = "cpu"):
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=11,
        context=context,
        n_layer=2,
        n_head=4,
        n_embd=32,
        pe=pe,
        mlm_pe=mlm_pe,
        max_rel=max_rel,
    )
    m = build_model(cfg).to(device)
    with torch.no_grad():  # pos starts at zeros (uniform): give it distinct logits to check
        for mod in m.modules():
            if isinstance(mod, PositionAttention):
                mod.distance_weight.normal_()
    return m


def set_flex(m: torch.nn.Module, on: bool | None) -> None:
    for mod in m.modules():
        if isinstance(mod, RelativeAttention | PositionAttention):
            mod.flex = on


def batch(T: int, device: str = "cpu", seed: int = 1) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 11, (3, T), generator=g)
    return x.to(device), torch.randint(0, 11, (3, T), generator=g).to(device)


def dense_flex(q: Tensor, k: Tensor, v: Tensor, score_mod, block_mask, scale=None) -> Tensor:
    """FlexAttention's definition, densely: score_mod on every (b, h, i, j), mask_mod's False
    entries removed, softmax over keys, times v."""
    B, H, T, D = q.shape
    S = k.size(2)
    scale = D**-0.5 if scale is None else scale
    b = torch.arange(B)[:, None, None, None]
    h = torch.arange(H)[None, :, None, None]
    i = torch.arange(T)[None, None, :, None]
    j = torch.arange(S)[None, None, None, :]
    scores = score_mod((q @ k.transpose(-2, -1)) * scale, b, h, i, j)
    if block_mask is not None:
        scores = scores.masked_fill(~block_mask.mask_mod(b, h, i, j), float("-inf"))
    return scores.softmax(-1) @ v


@pytest.mark.parametrize(("pe", "mlm_pe", "max_rel"), CASES, ids=IDS)
@pytest.mark.parametrize("T", [24, 7])
def test_flex_forward_equals_the_explicit_path(pe: str, mlm_pe: str, max_rel: int, T: int):
    m = model(pe, mlm_pe, max_rel).eval()
    x, y = batch(T)
    with torch.no_grad():
        set_flex(m, False)
        want, _ = m(x, y)
        set_flex(m, True)
        got, _ = m(x, y)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), (got - want).abs().max()


@pytest.mark.parametrize(("pe", "mlm_pe", "max_rel"), CASES, ids=IDS)
def test_flex_score_mods_give_the_explicit_gradients(pe, mlm_pe, max_rel, monkeypatch):
    m = model(pe, mlm_pe, max_rel).train()
    x, y = batch(24)
    set_flex(m, False)
    _, loss = m(x, y)
    want = torch.autograd.grad(loss, list(m.parameters()))
    monkeypatch.setattr(flex_module, "_attend", dense_flex)
    set_flex(m, True)
    _, loss_flex = m(x, y)
    got = torch.autograd.grad(loss_flex, list(m.parameters()))
    assert torch.allclose(loss_flex, loss, atol=1e-6)
    for (name, _), g, w in zip(m.named_parameters(), got, want):
        assert torch.allclose(g, w, atol=1e-5, rtol=1e-4), name


def test_the_dense_reference_is_flex_attention():
    """dense_flex (the gradient test's stand-in) computes what FlexAttention computes."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 20, 16) for _ in range(3))
    table = torch.randn(3, 20)
    mod = flex_module.distance_score_mod(table)
    mask = flex_module.causal_mask(20, torch.device("cpu"))
    want = dense_flex(q, k, v, mod, mask)
    got = flex_module.flex_attention(q, k, v, score_mod=mod, block_mask=mask)
    assert torch.allclose(got, want, atol=1e-5)


def test_cpu_training_keeps_the_blocked_path():
    """flex None means CUDA only: a CPU training step must not reach FlexAttention (it has no
    CPU backward)."""
    m = model("rel", "abs", 64, context=128).train()
    x, y = batch(128)
    _, loss = m(x, y)
    loss.backward()
    assert all(p.grad is not None for p in m.parameters())


def test_dropout_keeps_the_explicit_path():
    cfg = dict(vocab_size=11, context=16, n_layer=1, n_head=2, n_embd=32, dropout=0.5)
    m = build_model(ModelConfig(pe="rel", **cfg)).train()
    set_flex(m, True)  # would raise on CPU with gradients if it were taken
    x, y = batch(16)
    _, loss = m(x, y)
    loss.backward()


@CUDA
@pytest.mark.parametrize(("pe", "mlm_pe", "max_rel"), CASES, ids=IDS)
@pytest.mark.parametrize("T", [24, 200])
def test_flex_on_cuda_equals_the_explicit_path(pe: str, mlm_pe: str, max_rel: int, T: int):
    torch.backends.cuda.matmul.allow_tf32 = False
    m = model(pe, mlm_pe, max_rel, context=256, device="cuda").train()
    x, y = batch(T, "cuda")
    set_flex(m, False)
    _, loss = m(x, y)
    want = torch.autograd.grad(loss, list(m.parameters()))
    set_flex(m, None)  # auto: CUDA takes FlexAttention
    _, loss_flex = m(x, y)
    got = torch.autograd.grad(loss_flex, list(m.parameters()))
    assert torch.allclose(loss_flex, loss, atol=1e-4)
    for (name, _), g, w in zip(m.named_parameters(), got, want):
        assert torch.allclose(g, w, atol=1e-4, rtol=1e-3), name


@CUDA
@pytest.mark.parametrize("pe", ["rel", "pos"])
def test_flex_on_cuda_in_bf16_trains_like_the_explicit_path(pe: str):
    m = model(pe, "abs", 256, context=256, device="cuda").train()
    x, y = batch(256, "cuda")
    losses = {}
    for on in (False, None):
        set_flex(m, on)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = m(x, y)
        grads = torch.autograd.grad(loss, list(m.parameters()))
        losses[on] = (loss.float(), torch.cat([g.float().flatten() for g in grads]))
    (l0, g0), (l1, g1) = losses[False], losses[None]
    assert abs(l0 - l1) < 2e-2
    assert torch.nn.functional.cosine_similarity(g0, g1, dim=0) > 0.99
