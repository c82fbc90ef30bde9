"""Every encoding in TransformerLens (CfglabLens, a HookedRootModule) and in nnsight: cfglab's
logits, the documented hook names, and patches that agree with cfglab's own hooks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

from cfglab.errors import CfglabError
from cfglab.runs import load_run
from tests.test_interop import TOL, _tokens, make_run

HOOKS = (
    "hook_resid_pre",
    "attn.hook_pattern",
    "hook_attn_out",
    "hook_resid_mid",
    "hook_mlp_out",
    "hook_resid_post",
)
ENCODINGS = [("rel", "abs"), ("pos", "abs"), ("uni", "abs"), ("mlm", "abs"), ("mlm", "rel")]


@pytest.mark.parametrize(("pe", "mlm_pe"), ENCODINGS)
def test_every_encoding_opens_with_native_logits_and_hook_names(
    tmp_path: Path, pe: str, mlm_pe: str
) -> None:
    from cfglab.interop import transformer_lens_model
    from cfglab.interop.lens_native import CfglabLens

    run = make_run(tmp_path, pe, mlm_pe=mlm_pe)
    tl = transformer_lens_model(run)
    assert isinstance(tl, CfglabLens)
    native = load_run(run).model
    idx = _tokens(native.cfg.vocab_size)
    with torch.no_grad():
        logits, cache = tl.run_with_cache(idx)
        assert (logits - native(idx)[0]).abs().max().item() < TOL
        maps = native.attention_maps(idx)
    names = {"hook_embed"} | {f"blocks.{i}.{h}" for i in range(2) for h in HOOKS}
    assert names <= set(cache.keys()) and names <= set(tl.hook_dict)
    for i in range(2):
        pattern = cache[f"blocks.{i}.attn.hook_pattern"]
        assert (pattern - maps[i]).abs().max().item() < TOL
    assert tl.cfg.n_layers == 2 and tl.cfg.causal == (pe != "mlm")


@pytest.mark.parametrize("pe", ["rel", "uni", "rot"])
def test_run_with_hooks_patches_like_cfglab_hooks(tmp_path: Path, pe: str) -> None:
    from cfglab.interop import transformer_lens_model
    from cfglab.interpret.patching import patched_logits, residual

    run = make_run(tmp_path, pe)
    tl = transformer_lens_model(run, native=True)
    native = load_run(run).model
    idx, donor = _tokens(native.cfg.vocab_size), _tokens(native.cfg.vocab_size, t=24).flip(1)
    stream = residual(native, donor, 1)
    mask = torch.zeros(idx.shape, dtype=torch.bool)
    mask[:, -3:] = True

    def swap(act: torch.Tensor, hook: object) -> torch.Tensor:
        return torch.where(mask[..., None], stream, act)

    with torch.no_grad():
        theirs = tl.run_with_hooks(idx, fwd_hooks=[("blocks.0.hook_resid_post", swap)])
        ours = patched_logits(native, idx, 1, mask, stream)
        assert (theirs - ours).abs().max().item() < TOL
        assert (theirs - native(idx)[0]).abs().max().item() > 1e-3  # the patch did something
        assert not tl.blocks[0].hook_resid_post._forward_hooks  # removed afterwards


def test_hooked_transformer_numerics_need_the_bridge(tmp_path: Path) -> None:
    from cfglab.interop import transformer_lens_model

    run = make_run(tmp_path, "pos")
    with pytest.raises(CfglabError, match="TransformerBridge"):
        transformer_lens_model(run, hooked_transformer_numerics=True)


@pytest.fixture
def nnsight_unmounted() -> Iterator[ModuleType]:
    """nnsight, with its process-wide `object.save` taken off again: left mounted, it shadows every
    Ray actor handle's `save` and breaks the sweep tests that run later in this session."""
    import nnsight
    from nnsight._c import unmount

    if unmount is not None and hasattr(object(), "save"):
        unmount("save")
    yield nnsight
    assert not hasattr(object(), "save")


@pytest.mark.parametrize("pe", ["rel", "pos", "mlm"])
def test_nnsight_reads_and_patches_the_residual_stream(
    tmp_path: Path, pe: str, nnsight_unmounted: ModuleType
) -> None:
    from nnsight import NNsight

    save = nnsight_unmounted.save

    from cfglab.interpret.patching import patched_logits, residual

    run = make_run(tmp_path, pe)
    model = load_run(run).model
    model.explicit_attention(True)  # nnsight reads module outputs without torch hooks
    idx, donor = _tokens(model.cfg.vocab_size), _tokens(model.cfg.vocab_size).flip(1)
    stream = residual(model, donor, 2)
    mask = torch.zeros(idx.shape, dtype=torch.bool)
    mask[:, -1] = True
    wrapped = NNsight(model)
    with torch.no_grad():
        with wrapped.trace(idx):
            read = save(wrapped.blocks[1].hook_resid_post.output)
        torch.testing.assert_close(read, model.forward_hidden(idx)[2])
        with wrapped.trace(idx):
            wrapped.blocks[1].hook_resid_post.output[:, -1] = stream[:, -1]
            out = save(wrapped.output)
        ours = patched_logits(model, idx, 2, mask, stream)
    assert (out[0] - ours).abs().max().item() < TOL
    assert (out[0] - model(idx)[0]).abs().max().item() > 1e-3


def test_a_sweep_refuses_a_process_where_nnsight_mounted_save(
    nnsight_unmounted: ModuleType,
) -> None:
    from nnsight._c import mount, unmount

    from cfglab.sweep.tune import _refuse_mounted_save

    _refuse_mounted_save()  # nothing mounted: no error
    mount(nnsight_unmounted.save, "save")
    try:
        with pytest.raises(CfglabError, match="nnsight"):
            _refuse_mounted_save()
    finally:
        unmount("save")
