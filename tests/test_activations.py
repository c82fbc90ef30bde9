"""`cfglab activations`: residual streams in safetensors whose per-token labels are exactly
`cfglab sample --json`'s for the same seed, and whose streams are the model's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from typer.testing import CliRunner

from cfglab.cli import app
from cfglab.errors import CfglabError

MINI = Path(__file__).resolve().parents[1] / "grammars" / "mini.cfg"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from cfglab.runs import TrainConfig
    from cfglab.train import train

    root = tmp_path_factory.mktemp("act_runs")
    out = {}
    for pe, context in (("rot", 64), ("abs", 36), ("mlm", 64)):  # abs at 36: some do not fit
        cfg = TrainConfig(
            grammar=str(MINI),
            pe=pe,
            layers=2,
            heads=2,
            dim=16,
            context=context,
            batch=4,
            steps=4,
            threads=1,
            checkpoint_every=4,
        )
        out[pe] = train(cfg, root / pe, quiet=True)
    return out


@pytest.mark.parametrize("pe", ["rot", "abs"])
def test_labels_match_cfglab_sample_json(runs: dict[str, Path], pe: str, tmp_path: Path) -> None:
    n, seed = 9, 11
    res = CliRunner().invoke(
        app,
        ["activations", str(runs[pe]), "--n", str(n), "--seed", str(seed), "--out",
         str(tmp_path), "--layers", "0,2", "--json", "--threads", "1"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    sampled = CliRunner().invoke(
        app, ["sample", str(MINI), "-n", str(n), "--seed", str(seed), "--json"]
    )
    records = [json.loads(line) for line in sampled.output.splitlines()]
    with safe_open(str(tmp_path / "layer_2.safetensors"), "pt") as f:
        meta = f.metadata()
    terminals, nts = json.loads(meta["terminals"]), json.loads(meta["nonterminals"])
    t = load_file(str(tmp_path / "layer_2.safetensors"))
    kept = [i for i in range(n) if i not in summary["dropped"]]
    if pe == "abs":
        assert summary["dropped"] == [i for i, r in enumerate(records) if len(r["tokens"]) + 2 > 36]
        assert summary["dropped"], "the abs context was chosen to drop some strings"
    assert sorted(set(t["string"].tolist())) == kept
    for row in range(len(t["token"])):
        i, p = int(t["string"][row]), int(t["position"][row])
        rec = records[i]
        assert terminals[int(t["token"][row])] == rec["tokens"][p]
        for d in range(len(rec["ancestors"])):
            a = int(t["ancestors"][row, d])
            assert (nts[a] if a >= 0 else None) == rec["ancestors"][d][p]
            assert int(t["nt_end"][row, d]) == rec["boundaries"][d][p]
            assert int(t["ancestor_index"][row, d]) == rec["ancestor_index"][d][p]
        assert int(t["b_sharp"][row]) == rec["b_sharp"][p]
    assert len(t["token"]) == sum(len(records[i]["tokens"]) for i in kept) == summary["n_tokens"]
    assert meta["hook"] == "blocks.1.hook_resid_post" and meta["layer"] == "2"
    assert (tmp_path / "layer_0.safetensors").exists()
    assert not (tmp_path / "layer_1.safetensors").exists()


@pytest.mark.parametrize("pe", ["rot", "mlm"])
def test_streams_are_the_models(runs: dict[str, Path], tmp_path: Path, pe: str) -> None:
    """One string alone through the model gives its rows (an encoder sees the whole string)."""
    from cfglab.interop.activations import write_activations
    from cfglab.runs import load_run

    write_activations(runs[pe], tmp_path, 5, [0, 1, 2], seed=3)
    model = load_run(runs[pe]).model
    for layer in (0, 1, 2):
        t = load_file(str(tmp_path / f"layer_{layer}.safetensors"))
        one = t["string"] == 2  # one string alone, fed as BOS x EOS
        x = torch.tensor([[3, *t["token"][one].tolist(), 4]])
        with torch.no_grad():
            direct = model.forward_hidden(x)[layer][0, 1:-1]
        torch.testing.assert_close(t["resid"][one], direct, atol=1e-5, rtol=1e-5)
        assert t["resid"].shape == (len(t["token"]), 16)


def test_bad_layers_are_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    from cfglab.interop.activations import write_activations

    with pytest.raises(CfglabError, match="layers must lie"):
        write_activations(runs["rot"], tmp_path, 3, [3])
