"""cfglab.models: one suite run over every position encoding (decoders and both mlm options)."""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cfglab.data.vocab import Vocab
from cfglab.errors import CfglabError
from cfglab.evaluate.generation import generate
from cfglab.models import (
    DECODER_PES,
    MODEL_BUILDERS,
    PE,
    ModelConfig,
    build_model,
    describe,
    mask_tokens,
)
from cfglab.models.attention import Rotary
from cfglab.models.kernels import (
    causal_blocks,
    skew_both,
    skew_lower,
    skew_lower_block,
    skew_upper,
)

VOCAB, CONTEXT = 11, 16
VOCAB_OF = Vocab(VOCAB - 3)  # 8 terminals, then BOS, EOS, MASK
VARIANTS = [(pe.value, "abs") for pe in DECODER_PES] + [("mlm", "abs"), ("mlm", "rel")]
VARIANT_IDS = [pe if pe != "mlm" else f"mlm-{m}" for pe, m in VARIANTS]
DECODERS = [pe.value for pe in DECODER_PES]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: thread hand-offs cost more than they save on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(pe: str, mlm_pe: str = "abs", **overrides) -> ModelConfig:
    """2 layers, 4 heads (uni windows 1, 3, 7, 15), rel clipped at 4 < context."""
    fields = dict(vocab_size=VOCAB, context=CONTEXT, n_layer=2, n_head=4, n_embd=16, max_rel=4)
    return ModelConfig(pe=pe, mlm_pe=mlm_pe, **{**fields, **overrides})


def tiny_model(pe: str, mlm_pe: str = "abs", seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(tiny(pe, mlm_pe, **overrides)).eval()


def tokens(B: int, T: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(VOCAB, (B, T), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- shapes, gradients, maps


@pytest.mark.parametrize(("pe", "mlm_pe"), VARIANTS, ids=VARIANT_IDS)
def test_shapes(pe: str, mlm_pe: str) -> None:
    model, idx = tiny_model(pe, mlm_pe), tokens(3, 9)
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 9, VOCAB)
    assert loss.shape == () and torch.isfinite(loss)
    assert model(idx)[1] is None
    hidden = model.forward_hidden(idx)
    assert len(hidden) == 2 + 1 and all(h.shape == (3, 9, 16) for h in hidden)


@pytest.mark.parametrize(("pe", "mlm_pe"), VARIANTS, ids=VARIANT_IDS)
def test_gradients_reach_every_parameter(pe: str, mlm_pe: str) -> None:
    model = tiny_model(pe, mlm_pe).train()
    idx = tokens(2, CONTEXT)  # the full window: every position/distance row is used
    model(idx, tokens(2, CONTEXT, seed=2))[1].backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    for name, p in trainable:
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_loss_ignores_minus_100() -> None:
    model, idx = tiny_model("rot"), tokens(2, 8)
    targets = tokens(2, 8, seed=3)
    logits, _ = model(idx)
    partial = targets.clone()
    partial[:, ::2] = -100
    expected = F.cross_entropy(logits[:, 1::2].reshape(-1, VOCAB), targets[:, 1::2].reshape(-1))
    assert torch.allclose(model(idx, partial)[1], expected, atol=1e-6)


@pytest.mark.parametrize(("pe", "mlm_pe"), VARIANTS, ids=VARIANT_IDS)
def test_attention_maps_are_distributions(pe: str, mlm_pe: str) -> None:
    model, idx = tiny_model(pe, mlm_pe), tokens(2, 10)
    maps = model.attention_maps(idx)
    assert maps.shape == (2, 2, 4, 10, 10)  # (L, B, nh, T, T)
    assert torch.allclose(maps.sum(-1), torch.ones(2, 2, 4, 10), atol=1e-5)
    assert (maps >= 0).all()
    above = torch.ones(10, 10, dtype=torch.bool).triu(1)
    if pe == "mlm":
        assert (maps[..., above] > 0).all()  # the encoder looks ahead
    else:
        assert (maps[..., above] == 0).all()


@pytest.mark.parametrize(("pe", "mlm_pe"), VARIANTS, ids=VARIANT_IDS)
def test_attention_maps_match_forward(pe: str, mlm_pe: str) -> None:
    """The analysis path (probs) and the fast path (SDPA / shared explicit) agree."""
    model, idx = tiny_model(pe, mlm_pe), tokens(2, 12)
    x = model.embed(idx)
    block = model.blocks[0]
    h = block.ln_1(x)
    attn = block.attn
    v_proj = attn.c_v if hasattr(attn, "c_v") else None
    if v_proj is None:
        v = attn.heads(attn.c_attn(h).chunk(3, dim=2)[2])
    else:
        v = attn.heads(v_proj(h))
    expected = attn.merge(attn.probs(h) @ v)
    assert torch.allclose(attn(h), expected, atol=1e-5)


# ---------------------------------------------------------------- causality / bidirectionality


@pytest.mark.parametrize("pe", DECODERS)
def test_decoder_is_causal(pe: str) -> None:
    model, idx = tiny_model(pe), tokens(2, CONTEXT)
    logits = model(idx)[0]
    for cut in (1, 5, CONTEXT - 1):
        changed = idx.clone()
        changed[:, cut:] = (changed[:, cut:] + 1 + tokens(2, CONTEXT - cut, seed=cut)) % VOCAB
        other = model(changed)[0]
        assert torch.allclose(other[:, :cut], logits[:, :cut], atol=1e-6)
        assert not torch.allclose(other[:, cut:], logits[:, cut:], atol=1e-4)


@pytest.mark.parametrize("mlm_pe", ["abs", "rel"])
def test_mlm_is_bidirectional(mlm_pe: str) -> None:
    model, idx = tiny_model("mlm", mlm_pe), tokens(2, 10)
    changed = idx.clone()
    changed[:, -1] = (changed[:, -1] + 1) % VOCAB
    assert not torch.allclose(model(changed)[0][:, 0], model(idx)[0][:, 0], atol=1e-6)


# ---------------------------------------------------------------- the variants' definitions


@pytest.mark.parametrize("pe", ["pos", "uni"])
def test_pos_uni_have_no_query_key_weights(pe: str) -> None:
    model = tiny_model(pe)
    expected = {"c_v.weight", "c_v.bias", "c_proj.weight", "c_proj.bias"}
    expected |= {"distance_weight"} if pe == "pos" else set()
    for block in model.blocks:
        assert {n for n, _ in block.attn.named_parameters()} == expected
    # and the weights ignore the tokens entirely
    maps = [model.attention_maps(tokens(1, 10, seed=s)) for s in (1, 2)]
    assert torch.equal(maps[0], maps[1])


def test_pos_training_window_equals_the_indexed_logits() -> None:
    """The skewed Toeplitz build (training) and plain indexing (decoding) give the same logits."""
    attn = tiny_model("pos").blocks[0].attn
    with torch.no_grad():
        attn.distance_weight.normal_()
    T = CONTEXT
    d = torch.arange(T)[:, None] - torch.arange(T)[None, :]
    skewed = attn.distance_logits(d, 0)
    indexed = attn.distance_weight[:, d.clamp(min=0)]
    assert torch.equal(skewed[:, d >= 0], indexed[:, d >= 0])


def uniform_matrix(width: int, T: int) -> torch.Tensor:
    """By hand: row i averages positions max(0, i - width + 1) .. i."""
    A = torch.zeros(T, T)
    for i in range(T):
        lo = max(0, i - width + 1)
        A[i, lo : i + 1] = 1.0 / (i + 1 - lo)
    return A


def test_uni_attention_is_the_averaging_matrix() -> None:
    model, T = (
        tiny_model("uni", n_head=5, n_embd=20),
        CONTEXT,
    )  # head 5 has width 31 > T: prefix mean
    maps = model.attention_maps(tokens(2, T))  # (L, B, nh, T, T)
    for h in range(5):
        expected = uniform_matrix(2 ** (h + 1) - 1, T)
        assert torch.allclose(maps[:, :, h], expected.expand(2, 2, T, T), atol=1e-6), h
    assert torch.allclose(
        maps[0, 0, 4], torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1)[:, None]
    )


def naive_rel_probs(attn, x: torch.Tensor, causal: bool) -> torch.Tensor:
    """DeBERTa eq. 4 with a loop over (head, i, j); x (T, C), one sequence."""
    T, C = x.shape
    H, hs, k = attn.n_head, attn.head_size, attn.max_rel
    q, key, _ = attn.c_attn(x).split(C, dim=1)
    qr, kr = attn.c_pos(attn.rel_emb.weight).split(C, dim=1)

    def delta(a, b):
        return min(max(a - b, -k), k - 1) + k

    logits = torch.full((H, T, T), float("-inf"))
    for h in range(H):
        sl = slice(h * hs, (h + 1) * hs)
        for i in range(T):
            for j in range(T):
                if causal and j > i:
                    continue
                s = q[i, sl] @ key[j, sl] + q[i, sl] @ kr[delta(i, j), sl]
                s = s + key[j, sl] @ qr[delta(j, i), sl]
                logits[h, i, j] = s / math.sqrt(3 * hs)
    return logits.softmax(-1)


@pytest.mark.parametrize("pe", ["rel", "mlm"])
def test_rel_matches_naive_loop(pe: str) -> None:
    """T = 9 > max_rel = 4, so clipping is exercised on both sides of the diagonal."""
    model = tiny_model(pe, "rel")
    attn = model.blocks[1].attn
    x = torch.randn(2, 9, 16, generator=torch.Generator().manual_seed(5))
    probs = attn.probs(x)
    for b in range(2):
        expected = naive_rel_probs(attn, x[b], causal=pe == "rel")
        assert torch.allclose(probs[b], expected, atol=1e-5)


@pytest.mark.parametrize("block", [1, 3, 4, 8])
def test_rel_query_blocks_equal_the_whole_window(block: int) -> None:
    """Training windows run in query blocks (T = 9: blocks of 4 leave a last block of 1)."""
    outs, grads = [], []
    for query_block in (block, 10**6):
        model = tiny_model("rel")
        for b in model.blocks:
            b.attn.query_block = query_block
        x = torch.randn(2, 9, 16, generator=torch.Generator().manual_seed(5), requires_grad=True)
        y = model.blocks[0].attn(x)
        y.pow(2).sum().backward()
        outs.append(y.detach())
        grads.append([x.grad] + [p.grad for p in model.blocks[0].attn.parameters()])
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("transpose", [False, True])
def test_skews_have_exact_gradients(transpose: bool) -> None:
    """The skew views' gradients (rel's and pos's training path; autograd's own backward)."""
    for skew, width in ((skew_lower, 6), (skew_upper, 6), (skew_both, 10), (skew_lower_block, 9)):
        x = torch.randn(2, 3, 5, width, dtype=torch.double, requires_grad=True)
        fn = (lambda t, skew=skew: skew(t).transpose(-2, -1)) if transpose else skew
        assert torch.autograd.gradcheck(fn, (x,))


def test_rel_shares_one_table_across_layers() -> None:
    model = tiny_model("rel")
    tables = {id(block.attn.rel_emb.weight) for block in model.blocks}
    assert tables == {id(model.rel_emb.weight)}
    assert model.rel_emb.weight.shape == (2 * 4, 16)


@settings(max_examples=30, deadline=None)
@given(m=st.integers(0, 300), n=st.integers(0, 300), shift=st.integers(-200, 200))
def test_rotary_preserves_norms_and_depends_on_offset_only(m: int, n: int, shift: int) -> None:
    rot = Rotary(head_size=8, base=10000.0, context=64)  # positions past 64 take the slow path
    g = torch.Generator().manual_seed(m * 1000 + n)
    q, k = (
        torch.randn(1, 1, 2, 8, generator=g),
        torch.randn(1, 1, 2, 8, generator=g),
    )  # (B, T, n, hs)
    rq, rk = rot(q, m), rot(k, n)
    assert torch.allclose(rq.norm(dim=-1), q.norm(dim=-1), atol=1e-5)
    m2, n2 = m + abs(shift), n + abs(shift)
    dot, shifted = (rq * rk).sum(-1), (rot(q, m2) * rot(k, n2)).sum(-1)  # per head
    assert torch.allclose(dot, shifted, atol=1e-4)


def test_rotary_actually_rotates() -> None:
    rot = Rotary(head_size=8, base=10000.0, context=16)
    q = torch.randn(1, 1, 1, 8)
    assert torch.allclose(rot(q, 0), q)
    assert not torch.allclose(rot(q, 3), q, atol=1e-3)


def test_rotary_survives_a_dtype_cast() -> None:
    """Module.to(dtype) must not drop the rotation (a complex buffer would lose its sin)."""
    rot = Rotary(head_size=8, base=10000.0, context=16)
    q = torch.randn(1, 4, 1, 8)
    expected = rot(q, 0)
    round_trip = rot.to(torch.float64).to(torch.float32)
    assert torch.allclose(round_trip(q, 0), expected, atol=1e-6)
    assert not torch.allclose(rot.to(torch.bfloat16)(q.bfloat16(), 0).float(), q, atol=1e-2)


def test_abs_refuses_positions_past_the_context() -> None:
    model = tiny_model("abs")
    with pytest.raises(CfglabError, match="16 positions"):
        model(tokens(1, CONTEXT + 1))
    with pytest.raises(CfglabError, match="16 positions"):
        generate(model, tokens(1, 4).numpy(), VOCAB_OF, CONTEXT)


@pytest.mark.parametrize("pe", ["rel", "rot", "pos", "uni"])
def test_relative_variants_run_past_the_context(pe: str) -> None:
    model = tiny_model(pe)
    assert model(tokens(2, 2 * CONTEXT))[0].shape == (2, 2 * CONTEXT, VOCAB)


# ---------------------------------------------------------------- KV cache and generation


@pytest.mark.parametrize("pe", DECODERS)
def test_incremental_steps_equal_the_full_forward(pe: str) -> None:
    """Uneven chunks exercise multi-token steps at an offset (the masked SDPA / gather paths)."""
    model, idx = tiny_model(pe), tokens(2, 14)
    full = model(idx)[0]
    cache, pieces, t = model.init_cache(2), [], 0
    for n in (5, 1, 3, 1, 4):
        pieces.append(model.step(idx[:, t : t + n], cache))
        t += n
    assert cache.length == 14
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5)


def _sample(model: torch.nn.Module, prompt: torch.Tensor, new: int, **kw) -> list[list[int]]:
    """Completions by the one generation loop (stops on EOS, BOS or MASK: VOCAB_OF's specials)."""
    out = generate(model, prompt.cpu().numpy(), VOCAB_OF, new, device=str(prompt.device), **kw)
    return [c.tolist() for c in out.completions]


@pytest.mark.parametrize("pe", DECODERS)
def test_cached_generation_equals_uncached(pe: str) -> None:
    model, prompt = tiny_model(pe), tokens(3, 4) % VOCAB_OF.n_terminals
    new = CONTEXT - 4 if pe == "abs" else 2 * CONTEXT  # relative variants run past the context
    runs = [_sample(model, prompt, new, seed=7, use_cache=use_cache) for use_cache in (True, False)]
    assert runs[0] == runs[1]
    assert all(len(c) <= new for c in runs[0])
    assert _sample(model, prompt, new, seed=8) != runs[0]  # the seed matters


def test_greedy_generation_follows_the_argmax() -> None:
    model, prompt = tiny_model("rot"), tokens(4, 3) % VOCAB_OF.n_terminals
    completions = _sample(model, prompt, 10, temperature=0)
    for row, completion in zip(prompt, completions):
        seq = row.tolist()
        for tok in completion:  # every emitted token is the greedy choice after its prefix
            assert tok == int(model(torch.tensor([seq]))[0][0, -1].argmax())
            seq.append(tok)
        if len(completion) < 10:  # it stopped: on a special token
            assert int(model(torch.tensor([seq]))[0][0, -1].argmax()) >= VOCAB_OF.n_terminals


def test_cache_select_keeps_rows() -> None:
    """Dropping finished rows from a cache leaves the others decoding as before."""
    model, idx = tiny_model("rel"), tokens(3, 9)
    full = model(idx)[0]
    cache = model.init_cache(3)
    model.step(idx[:, :6], cache)
    kept = cache.select(torch.tensor([True, False, True]))
    assert kept.length == 6 and kept.layers[0].v.size(0) == 2
    assert torch.allclose(model.step(idx[[0, 2], 6:], kept), full[[0, 2], 6:], atol=1e-5)


def test_step_refuses_to_overflow_the_cache() -> None:
    model = tiny_model("rot")
    cache = model.init_cache(1, capacity=4)
    model.step(tokens(1, 4), cache)
    with pytest.raises(CfglabError, match="holds 4"):
        model.step(tokens(1, 1), cache)


DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
    ),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("pe", "mlm_pe"), VARIANTS, ids=VARIANT_IDS)
def test_bf16_training_step_and_generation(pe: str, mlm_pe: str, device: str) -> None:
    torch.manual_seed(0)
    model = build_model(tiny(pe, mlm_pe)).to(device)
    for block in model.blocks:  # windows of 16 in query blocks of 5: the blocked paths run too
        if hasattr(block.attn, "query_block"):
            block.attn.query_block = 5
    idx = tokens(4, CONTEXT).to(device)
    with torch.autocast(device, dtype=torch.bfloat16):
        loss = model(idx, idx)[1]
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())
    with torch.no_grad():
        fp32_loss = model(idx, idx)[1]
    assert abs(loss.item() - fp32_loss.item()) < 0.02 * fp32_loss.item()
    if pe != "mlm":
        model.eval()
        prompt = idx[:, :3] % VOCAB_OF.n_terminals
        runs = [
            _sample(model, prompt, CONTEXT - 3, seed=3, use_cache=use_cache)
            for use_cache in (True, False)
        ]
        assert runs[0] == runs[1]


@pytest.mark.parametrize("pe", DECODERS)
def test_decoder_is_causal_in_bf16_on_cpu(pe: str) -> None:
    """bf16 on CPU takes its own path for abs and rot (causal_blocks): still exactly causal."""
    model, idx = tiny_model(pe), tokens(2, CONTEXT)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(idx)[0]
        for cut in (1, 9):
            changed = idx.clone()
            changed[:, cut:] = (changed[:, cut:] + 1) % VOCAB
            assert torch.equal(model(changed)[0][:, :cut], logits[:, :cut])


@pytest.mark.parametrize("pe", ["abs", "rot"])
def test_bf16_windows_on_cpu_take_the_blocked_path(pe: str) -> None:
    attn = tiny_model(pe).blocks[0].attn
    q = torch.zeros(1, 4, CONTEXT, 4)
    assert attn.use_blocks(q.bfloat16(), CONTEXT)
    assert not attn.use_blocks(q, CONTEXT)  # fp32: SDPA
    assert not attn.use_blocks(q[:, :, :1].bfloat16(), CONTEXT)  # one cached query: SDPA


# ---------------------------------------------------------------- causal_blocks


def _qkv(B: int, H: int, T: int, hs: int, dtype: torch.dtype, seed: int = 0, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(B, H, T, hs, generator=g, dtype=torch.float64) * scale)
        .to(dtype)
        .requires_grad_()
        for _ in range(3)
    ]


def _with_bias(fn, bias, q, k, v):
    return fn(q, k, v, bias)


def _outputs_and_grads(fn, qkv, gy):
    y = fn(*qkv)
    y.backward(gy.to(y.dtype))
    return [y.detach().double()] + [t.grad.double() for t in qkv]


@settings(max_examples=40, deadline=None)
@given(
    B=st.integers(1, 3),
    H=st.integers(1, 3),
    T=st.integers(2, 19),
    hs=st.sampled_from([1, 2, 4, 8]),
    block=st.integers(1, 8),
    seed=st.integers(0, 10**6),
    with_bias=st.booleans(),
)
def test_causal_blocks_equal_sdpa(
    B: int, H: int, T: int, hs: int, block: int, seed: int, with_bias: bool
) -> None:
    """Outputs and every gradient (biases' too), in float64, any block size (ragged last
    blocks included), against SDPA with the bias and the causal mask as a float attn_mask."""
    g = torch.Generator().manual_seed(seed)
    gy = torch.randn(B, H, T, hs, generator=g, dtype=torch.float64)
    bias = torch.randn(B, H, T, T, generator=g, dtype=torch.float64) * with_bias
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    rows = [(i0, min(T, i0 + block)) for i0 in range(0, T, block)]

    def sdpa(q, k, v, bias):
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.masked_fill(future, -math.inf)
        )

    def blocks(q, k, v, bias):
        parts = [bias[:, :, i0:i1, :i1] for i0, i1 in rows] if with_bias else []
        return causal_blocks(q, k, v, block, biases=parts)

    results = []
    for fn in (sdpa, blocks):
        b = bias.clone().requires_grad_()
        results.append(
            _outputs_and_grads(
                functools.partial(_with_bias, fn, b),
                _qkv(B, H, T, hs, torch.float64, seed),
                gy,
            )
            + ([b.grad.double()] if with_bias else [])
        )
    for a, b in zip(*results):
        assert torch.allclose(a, b, atol=1e-10)


def test_causal_blocks_take_an_fp32_softmax_as_cuda_autocast_gives(monkeypatch) -> None:
    """Under CUDA's autocast softmax returns fp32 from bf16 logits (rel's blocks run there):
    outputs and gradients must stay in the inputs' bf16."""
    softmax = torch.softmax
    monkeypatch.setattr(torch, "softmax", lambda x, dim, **kw: softmax(x.float(), dim))
    q, k, v = _qkv(2, 2, 10, 4, torch.bfloat16)
    biases = [
        torch.zeros(
            2, 2, min(10, i + 4) - i, min(10, i + 4), dtype=torch.bfloat16, requires_grad=True
        )
        for i in range(0, 10, 4)
    ]
    y = causal_blocks(q, k, v, 4, biases=biases)
    y.float().sum().backward()
    assert y.dtype == q.grad.dtype == biases[0].grad.dtype == torch.bfloat16


def test_causal_blocks_gradcheck() -> None:
    qkv = _qkv(2, 2, 7, 3, torch.float64)
    assert torch.autograd.gradcheck(lambda q, k, v: causal_blocks(q, k, v, 3), qkv)


def test_causal_blocks_in_bf16_are_about_as_accurate_as_sdpa() -> None:
    """Against a float64 reference: blocks round the logits to bf16 (SDPA keeps them in fp32),
    so allow up to 2x SDPA's own bf16 error, and at most 2% of the reference's mean size."""
    shape = (4, 2, 128, 16)
    gy = torch.randn(*shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)

    def sdpa(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    ref = _outputs_and_grads(sdpa, _qkv(*shape, torch.float64, scale=1.5), gy)
    for_sdpa = _outputs_and_grads(sdpa, _qkv(*shape, torch.bfloat16, scale=1.5), gy)
    for_blocks = _outputs_and_grads(causal_blocks, _qkv(*shape, torch.bfloat16, scale=1.5), gy)
    for r, a, b in zip(ref, for_sdpa, for_blocks):
        err_sdpa, err_blocks = (a - r).abs().mean(), (b - r).abs().mean()
        assert err_blocks <= 2 * err_sdpa and err_blocks <= 0.02 * r.abs().mean()


# ---------------------------------------------------------------- masked LM


def test_mask_tokens_rates() -> None:
    """200k positions: tolerance 5 standard deviations of each binomial rate."""
    N, R, MASK = 200_000, 10, 10
    idx = torch.randint(R, (N // 100, 100), generator=torch.Generator().manual_seed(0))
    maskable = torch.ones_like(idx, dtype=torch.bool)
    maskable[:, 0] = False  # e.g. BOS never masked
    inputs, targets = mask_tokens(idx, MASK, R, torch.Generator().manual_seed(1), maskable=maskable)
    selected = targets != -100
    assert not selected[:, 0].any()
    assert torch.equal(targets[selected], idx[selected])
    assert torch.equal(inputs[~selected], idx[~selected])
    n_ok = maskable.sum().item()
    n_sel = selected.sum().item()

    def close(count: int, n: int, p: float) -> bool:
        return abs(count / n - p) <= 5 * math.sqrt(p * (1 - p) / n)

    assert close(n_sel, n_ok, 0.15)
    masked = (inputs == MASK) & selected
    changed = (inputs != idx) & (inputs != MASK) & selected
    kept = (inputs == idx) & selected
    assert close(masked.sum().item(), n_sel, 0.8)
    assert close(changed.sum().item(), n_sel, 0.1 * (1 - 1 / R))  # a random draw may hit idx
    assert close(kept.sum().item(), n_sel, 0.1 + 0.1 / R)


def test_mask_tokens_is_deterministic_per_generator() -> None:
    idx = tokens(4, 50)
    a = mask_tokens(idx, 10, 10, torch.Generator().manual_seed(3))
    b = mask_tokens(idx, 10, 10, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_mlm_loss_counts_only_masked_positions() -> None:
    model, idx = tiny_model("mlm"), tokens(2, 12)
    inputs, targets = mask_tokens(idx, 10, 10, torch.Generator().manual_seed(4), rate=0.5)
    logits, loss = model(inputs, targets)
    sel = targets != -100
    assert torch.allclose(loss, F.cross_entropy(logits[sel], targets[sel]), atol=1e-6)


# ---------------------------------------------------------------- config, registry, describe


def test_registry_covers_every_pe() -> None:
    assert set(MODEL_BUILDERS) == set(PE)
    for pe in PE:
        assert build_model(tiny(pe.value)).cfg.pe == pe


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(pe="alibi"), "pe must be one of"),
        (dict(pe="mlm", mlm_pe="rot"), "mlm_pe must be one of"),
        (dict(n_embd=18), "multiple of n_head"),
        (dict(n_layer=0), "n_layer must be >= 1"),
        (dict(dropout=1.0), "dropout"),
    ],
)
def test_config_refuses_bad_fields(fields: dict, message: str) -> None:
    base = dict(vocab_size=VOCAB, n_head=4, n_embd=16)
    with pytest.raises(CfglabError, match=message):
        ModelConfig(**{**base, **fields})


def test_rel_span_defaults_to_the_context() -> None:
    assert ModelConfig(vocab_size=VOCAB, context=64, pe="rel").max_rel == 64


def test_config_round_trips_through_a_dict() -> None:
    cfg = tiny("mlm", "rel", dropout=0.1)
    d = cfg.to_dict()
    assert d["pe"] == "mlm" and d["mlm_pe"] == "rel"
    assert ModelConfig.from_dict(d) == cfg
    with pytest.raises(CfglabError, match="unknown field"):
        ModelConfig.from_dict({**d, "n_layers": 3})


@pytest.mark.parametrize(("pe", "mlm_pe"), VARIANTS, ids=VARIANT_IDS)
def test_describe_counts_every_parameter(pe: str, mlm_pe: str) -> None:
    cfg = tiny(pe, mlm_pe)
    text = describe(cfg)
    total = int(text.split("total")[1].split()[0].replace(",", ""))
    assert total == build_model(cfg).num_params()
    assert ("relative position table" in text) == (cfg.attention == PE.REL)
    assert ("position embedding" in text) == (cfg.attention == PE.ABS)


def test_dropout_trains_stochastically_and_evaluates_deterministically() -> None:
    model, idx = tiny_model("rel", dropout=0.3), tokens(2, 8)
    assert torch.equal(model(idx)[0], model(idx)[0])
    model.train()
    assert not torch.equal(model(idx)[0], model(idx)[0])
