"""Activation patching: the identities that prove the plumbing, a synthetic one-position model,
the pairs against the chart, and `cfglab patch --json` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn
from typer.testing import CliRunner

from cfglab.data.vocab import Vocab
from cfglab.errors import CfglabError
from cfglab.evaluate.judge import Judge
from cfglab.grammar.dsl import load_grammar
from cfglab.grammar.sample import sample
from cfglab.interpret.patching import (
    Pairs,
    _random_like,
    make_pairs,
    patch_model,
    patch_run,
    restored,
)
from cfglab.models.hooks import HookPoint

KEYS = ("layer", "positions", "restored", "ci95", "kl_to_base_truth", "kl_to_donor_truth")
MINI = Path(__file__).resolve().parents[1] / "grammars" / "mini.cfg"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from cfglab.runs import TrainConfig
    from cfglab.train import train

    root = tmp_path_factory.mktemp("patch_runs")
    out = {}
    for pe in ("rot", "mlm"):
        cfg = TrainConfig(  # rot learns enough in 150 steps to read more than its last token
            grammar=str(MINI),
            pe=pe,
            layers=2,
            heads=2,
            dim=32 if pe == "rot" else 16,
            context=64,
            batch=16 if pe == "rot" else 4,
            steps=150 if pe == "rot" else 5,
            lr=3e-3,
            threads=1,
            checkpoint_every=150,
        )
        out[pe] = train(cfg, root / pe, quiet=True)
    return out


def mini_pairs(n: int = 40, seed: int = 0) -> tuple[Pairs, object]:
    g = load_grammar(MINI)
    s = sample(g, 160, seed)
    truth = Judge(g).next_tokens(s.strings())
    return make_pairs(s, truth, n, seed), s


def by(result: dict, layer: int, name: str) -> dict:
    return next(r for r in result["results"] if r["layer"] == layer and r["positions"] == name)


# --- the identities on a trained run ---------------------------------------------------------


def test_identities_on_a_trained_run(runs: dict[str, Path]) -> None:
    from cfglab.runs import load_run

    model = load_run(runs["rot"]).model
    pairs, _ = mini_pairs()
    pos = np.arange(pairs.base.shape[1])[None, :]
    sets = {
        "all": pos <= pairs.last[:, None],
        "last": pos == pairs.last[:, None],
        "none": np.zeros_like(pairs.base, dtype=bool),
    }
    res = patch_model(model, pairs, [0, 1, 2], sets, Vocab(3))
    assert by(res, 0, "all")["restored"] == pytest.approx(1.0, abs=1e-9)
    assert by(res, 2, "last")["restored"] == pytest.approx(1.0, abs=1e-9)
    for layer in (0, 1, 2):
        assert by(res, layer, "none")["restored"] == 0.0
        assert by(res, layer, "all")["restored"] == pytest.approx(1.0, abs=1e-9)
    # the exact columns of a full patch are the donor run's, of no patch the base run's
    assert by(res, 0, "all")["kl_to_donor_truth"] == res["reference"]["donor"]["kl_to_donor_truth"]
    assert by(res, 1, "none")["kl_to_base_truth"] == res["reference"]["base"]["kl_to_base_truth"]
    # an intermediate patch is neither identity (the trained model mixes positions)
    assert by(res, 0, "last")["restored"] < 0.9
    # pairs run in batches: the batch size changes nothing, the identities stay exact
    small = patch_model(model, pairs, [0, 1, 2], sets, Vocab(3), batch=7)
    for r, s in zip(res["results"], small["results"]):
        assert s["restored"] == pytest.approx(r["restored"], abs=1e-6)
    assert by(small, 0, "all")["restored"] == pytest.approx(1.0, abs=1e-9)


# --- a synthetic model whose output reads one position ---------------------------------------


class ReadOne(nn.Module):
    """Every position's output is the embedding of position `j` (then an identity block)."""

    def __init__(self, j: int, vocab: int = 6, dim: int = 8) -> None:
        super().__init__()
        self.j = j
        self.wte = nn.Embedding(vocab, dim)
        self.hook_embed = HookPoint()
        self.blocks = nn.ModuleList([_Block(j), _Block(None)])
        self.head = nn.Linear(dim, vocab)

    def forward(self, idx: Tensor) -> tuple[Tensor, None]:
        x = self.hook_embed(self.wte(idx))
        for block in self.blocks:
            x = block(x)
        return self.head(x), None


class _Block(nn.Module):
    def __init__(self, j: int | None) -> None:
        super().__init__()
        self.j = j
        self.hook_resid_post = HookPoint()

    def forward(self, x: Tensor) -> Tensor:
        y = x if self.j is None else x[:, self.j : self.j + 1].expand_as(x)
        return self.hook_resid_post(y)


def test_a_model_reading_one_position_is_restored_there_only() -> None:
    torch.manual_seed(0)
    j, T, N = 2, 6, 16
    model = ReadOne(j).eval()
    rng = np.random.default_rng(0)
    base = rng.integers(0, 3, size=(N, T))
    donor = base.copy()
    donor[:, j] = (base[:, j] + 1 + rng.integers(0, 2, size=N)) % 3  # differs at j
    other = [t for t in range(T) if t != j]
    donor[:, other] = rng.integers(0, 3, size=(N, len(other)))
    truth = np.full((N, 4), 0.25)
    pairs = Pairs(base, donor, np.full(N, T - 1), truth, truth, np.zeros((0, N, T), bool))
    sets = {f"p{t}": np.eye(T, dtype=bool)[t][None].repeat(N, 0) for t in range(T)}
    res = patch_model(model, pairs, [0, 1, 2], sets, Vocab(3))
    for t in range(T):
        assert by(res, 0, f"p{t}")["restored"] == pytest.approx(1.0 if t == j else 0.0, abs=1e-9)
        # after block 1 the last position holds position j's content
        expect = 1.0 if t == T - 1 else 0.0
        assert by(res, 1, f"p{t}")["restored"] == pytest.approx(expect, abs=1e-9)


# --- pairs and position sets -----------------------------------------------------------------


def test_pairs_are_equal_length_valid_prefixes_with_different_truth() -> None:
    g = load_grammar(MINI)
    pairs, _ = mini_pairs(30, seed=3)
    judge = Judge(g)
    vocab = Vocab(3)
    assert len(pairs) == 30
    for n in range(len(pairs)):
        k = int(pairs.last[n])
        for row, truth in ((pairs.base, pairs.base_truth), (pairs.donor, pairs.donor_truth)):
            assert row[n, 0] == vocab.bos and (row[n, k + 1 :] == vocab.eos).all()
            prefix = row[n, 1 : k + 1]
            assert (prefix < 3).all()
            # the row is the chart's after this prefix (any string continuing it gives it)
            np.testing.assert_allclose(judge.next_token(prefix)[k], truth[n], atol=1e-12)
        assert 0.5 * np.abs(pairs.base_truth[n] - pairs.donor_truth[n]).sum() >= 0.5


def test_nt_end_sets_are_the_sampled_boundaries_of_either_prefix() -> None:
    g = load_grammar(MINI)
    s = sample(g, 2, 5)
    truth = Judge(g).next_tokens(s.strings())
    from cfglab.interpret.patching import _assemble

    k = 7
    pairs = _assemble(s, truth, [(0, 1, k)])
    for d in range(s.depth):
        b0 = s.boundaries[d, s.offsets[0] : s.offsets[0] + k]
        b1 = s.boundaries[d, s.offsets[1] : s.offsets[1] + k]
        np.testing.assert_array_equal(pairs.nt_ends[d, 0, 1 : k + 1], b0 | b1)
        assert not pairs.nt_ends[d, 0, 0]  # BOS ends nothing


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 20), st.integers(0, 2**31 - 1), st.booleans())
def test_random_controls_match_count_and_last(k: int, seed: int, keep_last: bool) -> None:
    rng = np.random.default_rng(seed)
    mask = np.zeros((1, k + 3), dtype=bool)
    mask[0, : k + 1] = rng.random(k + 1) < 0.5
    out = _random_like(mask, np.array([k]), rng, keep_last)
    assert not out[0, k + 1 :].any()
    if keep_last:
        assert out[0, k] == mask[0, k]
        assert out.sum() == mask.sum()
    else:
        assert not out[0, k] and out.sum() == min(mask.sum(), k)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.integers(2, 6), st.integers(0, 2**31 - 1))
def test_restored_is_zero_at_the_base_and_one_at_the_donor(n: int, v: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    b, d = (rng.dirichlet(np.ones(v), size=n) for _ in range(2))
    assert restored(b, b, d) == pytest.approx(0.0, abs=1e-12)
    assert restored(d, b, d) == 1.0
    assert np.isnan(restored(d, d, d))  # a model that cannot tell them apart: undefined


# --- the run and the CLI ---------------------------------------------------------------------


def test_cli_json_shape_and_plot(runs: dict[str, Path]) -> None:
    from cfglab.cli import app

    res = CliRunner().invoke(app, ["patch", str(runs["rot"]), "--pairs", "12", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["pairs"] == 12
    names = {r["positions"] for r in out["results"]}
    assert {"all", "last", "last_random"} <= names
    assert any(n.startswith("nt_end_l") and not n.endswith("random") for n in names)
    for r in out["results"] + out["untrained"]["results"]:
        assert {
            "layer",
            "positions",
            "restored",
            "ci95",
            "kl_to_base_truth",
            "kl_to_donor_truth",
        } <= set(r)
        lo, hi = r["ci95"]
        assert lo <= r["restored"] + 1e-9 and r["restored"] <= hi + 1e-9
    assert {r["layer"] for r in out["results"]} == {0, 1, 2}
    assert out["subtree"]["swaps"] > 0 and out["untrained"]["subtree"]["swaps"] > 0
    assert (Path(runs["rot"]) / "patch" / "patch.png").stat().st_size > 1000
    assert json.loads((Path(runs["rot"]) / "patch" / "patch.json").read_text())["pairs"] == 12


def test_cli_table(runs: dict[str, Path]) -> None:
    from cfglab.cli import app

    res = CliRunner().invoke(
        app, ["patch", str(runs["rot"]), "--pairs", "6", "--layers", "0,2"], env={"COLUMNS": "160"}
    )
    assert res.exit_code == 0, res.output
    for text in ("trained: restored", "untrained twin", "subtree swap", "nt_end_l", "patch.json"):
        assert text in res.output


def test_refusals(runs: dict[str, Path]) -> None:
    with pytest.raises(CfglabError, match="mlm"):
        patch_run(str(runs["mlm"]), n_pairs=4, plots=False)
    with pytest.raises(CfglabError, match="layers must lie"):
        patch_run(str(runs["rot"]), n_pairs=4, layers=[5], plots=False)
    with pytest.raises(CfglabError, match="total variation"):
        g = load_grammar(MINI)
        s = sample(g, 8, 0)
        make_pairs(s, Judge(g).next_tokens(s.strings()), 4, 0, min_tv=1.01)


# --- the sweep's `patch:` section --------------------------------------------------------------

SWEEP = """\
name: p
grammars: [{grammar}]
model: {{pe: [rot], size: {{layers: 1, heads: 2, dim: 16}}}}
train: {{steps: 5}}
patch: {patch}
"""


def test_sweep_section_parses_and_checks_its_options(tmp_path: Path) -> None:
    from cfglab.sweep.spec import load_sweep

    good = tmp_path / "good.yaml"
    good.write_text(SWEEP.format(grammar=MINI, patch="{enabled: true, pairs: 8, layers: [0, 1]}"))
    spec = load_sweep(good).spec
    assert "patch" in spec.task_kinds() and spec.patch.pairs == 8
    bad = tmp_path / "bad.yaml"
    bad.write_text(SWEEP.format(grammar=MINI, patch="{enabled: true, options: {min_tvv: 0.2}}"))
    with pytest.raises(CfglabError, match="min_tv"):
        load_sweep(bad)


def test_patch_runs_as_a_task_from_plain_arguments(runs: dict[str, Path]) -> None:
    from cfglab.sweep.tasks import applies, run_task

    section = {"layers": [0, 2], "pairs": 6, "seed": 1, "options": {"plots": False}}
    record = run_task("patch", str(runs["rot"]), section, threads=1)
    assert record["kind"] == "patch" and record["result"]["pairs"] == 6
    assert {r["layer"] for r in record["result"]["results"]} == {0, 2}
    assert not applies("patch", {"pe": "mlm"}) and applies("patch", {"pe": "rot"})


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_patch_runs_as_a_ray_task(runs: dict[str, Path], ray_session: str) -> None:
    import ray

    from cfglab.sweep.tasks import run_task

    section = {"layers": [2], "pairs": 6, "seed": 0, "options": {"plots": False}}
    ref = ray.remote(run_task).options(num_cpus=1).remote("patch", str(runs["rot"]), section, 1)
    record = ray.get(ref, timeout=240)
    last = next(r for r in record["result"]["results"] if r["positions"] == "last")
    assert last["restored"] == pytest.approx(1.0, abs=1e-9)  # the identity, in a Ray worker


# --- the subtree swap --------------------------------------------------------------------------


def test_nodes_are_the_sampled_constituents() -> None:
    from cfglab.interpret.subtree import nodes

    g = load_grammar(MINI)
    s = sample(g, 6, 2)
    for node in nodes(s):
        lo = s.offsets[node.string]
        anc, ends = s.labels(node.string)
        d = next(d for d in range(s.depth) if (anc[d, node.start : node.end] == node.nt).all())
        assert ends[d, node.end - 1] and not ends[d, node.start : node.end - 1].any()
        assert node.start == 0 or ends[d, node.start - 1] or anc[d, node.start - 1] < 0
        assert lo + node.end <= s.offsets[node.string + 1]


def test_swaps_change_only_a_subtree_and_keep_the_language(runs: dict[str, Path]) -> None:
    from cfglab.interpret.subtree import make_swaps, subtree_experiment
    from cfglab.runs import load_run

    g = load_grammar(MINI)
    judge = Judge(g)
    swaps = make_swaps(sample(g, 200, 4), judge, 30, 0)
    assert swaps is not None and len(swaps.last) == 30
    pos = np.arange(swaps.base.shape[1])
    for n in range(30):
        a, b = swaps.span[n]
        differ = np.flatnonzero(swaps.base[n] != swaps.donor[n])
        assert differ.size and differ.min() >= a and differ.max() <= b  # inside the span only
        assert swaps.last[n] > b  # at least one continuation token
        donor_prefix = swaps.donor[n, 1 : swaps.last[n] + 1]
        assert swaps.donor_truth[n].sum() == pytest.approx(1.0)  # a valid prefix
        np.testing.assert_allclose(judge.next_token(donor_prefix)[-1], swaps.donor_truth[n])
    assert pos.size == swaps.base.shape[1]
    model = load_run(runs["rot"]).model
    out = subtree_experiment(model, swaps, [0, 1, 2], 0, "cpu", 1.0)
    assert by(out, 0, "subtree")["restored"] == pytest.approx(1.0, abs=1e-9)
    for name in ("subtree", "nt_end", "inside_random"):
        assert by(out, 2, name)["restored"] == 0.0  # no set holds the last position
    assert 0.0 <= out["truth_equal"] <= 1.0 and out["true_tv"] >= 0.0
