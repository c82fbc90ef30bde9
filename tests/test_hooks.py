"""Hook points: attention patterns and the residual stream, read and patched by forward hooks."""

from __future__ import annotations

import pytest
import torch

from cfglab.models import ModelConfig, build_model

PES = ["abs", "rel", "rot", "pos", "uni", "mlm"]


def _model(pe: str, mlm_pe: str = "abs"):
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=9, context=16, n_layer=2, n_head=2, n_embd=16, pe=pe, mlm_pe=mlm_pe
    )
    model = build_model(cfg).eval()
    with torch.no_grad():  # nonzero everywhere (pos starts at zeros = uniform)
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def _idx(T: int = 12) -> torch.Tensor:
    return torch.randint(0, 9, (3, T), generator=torch.Generator().manual_seed(1))


def _probs_block_by_block(model, idx):
    """The explicit-path probabilities without any hook: each layer's probs(ln_1(x))."""
    x, maps = model.embed(idx), []
    for block in model.blocks:
        maps.append(block.attn.probs(block.ln_1(x)))
        x = block(x)
    return torch.stack(maps)


@pytest.mark.parametrize("pe", PES)
def test_reading_the_pattern_matches_attention_maps_and_changes_nothing(pe) -> None:
    model, idx = _model(pe), _idx()
    with torch.no_grad():
        plain = model(idx)[0]
        seen = []
        h = model.blocks[1].attn.hook_pattern.register_forward_hook(
            lambda m, i, o: seen.append(o.clone())
        )
        hooked = model(idx)[0]  # the hook forces the explicit path: the same function
        h.remove()
        maps = model.attention_maps(idx)
        reference = _probs_block_by_block(model, idx)
    assert (hooked - plain).abs().max() < 1e-5
    assert seen[0].shape == (3, 2, 12, 12)
    assert torch.allclose(seen[0], maps[1], atol=1e-6)
    assert torch.allclose(maps, reference, atol=1e-6)
    assert torch.allclose(maps.sum(-1), torch.ones(()), atol=1e-5)


@pytest.mark.parametrize("pe", PES)
def test_patching_one_head_changes_the_output(pe) -> None:
    model, idx = _model(pe), _idx()
    T = idx.size(1)

    causal = model.causal if hasattr(model, "causal") else True
    even = torch.tril(torch.ones(T, T)) if causal else torch.ones(T, T)
    even = even / even.sum(-1, keepdim=True)

    def to_self(_m, _i, pattern):  # head 0 of layer 0 averages its keys evenly
        patched = pattern.clone()
        patched[:, 0] = even
        return patched

    with torch.no_grad():
        plain = model(idx)[0]
        h = model.blocks[0].attn.hook_pattern.register_forward_hook(to_self)
        patched = model(idx)[0]
        h.remove()
        again = model(idx)[0]
    assert (patched - plain).abs().max() > 1e-3
    assert torch.equal(again, plain)  # removed hook, fast path again


@pytest.mark.parametrize("pe", ["abs", "rot", "rel"])
def test_patching_the_residual_stream_and_hidden_states(pe) -> None:
    model, idx = _model(pe), _idx()
    with torch.no_grad():
        hidden = model.forward_hidden(idx)
        h = model.blocks[0].hook_resid_post.register_forward_hook(lambda m, i, o: o * 0)
        zeroed = model.forward_hidden(idx)
        logits = model(idx)[0]
        h.remove()
    assert len(hidden) == 3 and hidden[0].shape == (3, 12, 16)
    assert torch.equal(zeroed[1], torch.zeros_like(zeroed[1]))  # probes see the patched value
    assert (logits - model(idx)[0]).abs().max() > 1e-3


@pytest.mark.parametrize("pe", ["abs", "rel", "rot", "pos", "uni"])
def test_cached_decoding_through_a_hooked_pattern(pe) -> None:
    """Decoding with a cache (queries after keys) through the explicit path: same logits."""
    model, idx = _model(pe), _idx(10)
    with torch.no_grad():
        full = model(idx)[0]
        model.explicit_attention(True)
        cache = model.init_cache(3, 10)
        first = model.step(idx[:, :6], cache)
        rest = model.step(idx[:, 6:], cache)
        model.explicit_attention(False)
    assert torch.allclose(torch.cat([first, rest], 1), full, atol=1e-5)


def test_hook_names_follow_transformer_lens() -> None:
    names = dict(_model("rot").named_modules())
    for n in (
        "hook_embed",
        "blocks.1.attn.hook_pattern",
        "blocks.1.hook_resid_pre",
        "blocks.1.hook_resid_mid",
        "blocks.1.hook_resid_post",
        "blocks.0.hook_attn_out",
        "blocks.0.hook_mlp_out",
    ):
        assert n in names, n
