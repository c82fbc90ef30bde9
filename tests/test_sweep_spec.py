"""The sweep file: schema, located errors, smoke overrides, the grid and its run names."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cfglab.errors import CfglabError
from cfglab.models.config import PE
from cfglab.runs import TrainConfig
from cfglab.sweep.spec import expand, load_sweep, resolve_grammar

REPO = Path(__file__).resolve().parents[1]
GRAMMAR = 'grammar small\nstart S\nS -> A B | B A A\nA -> "1" "2" | "3"\nB -> "2" "2" "3" | "1"\n'

GOOD = """\
name: t
grammars: [small]
model:
  pe: [abs, rot]
  size: {layers: 1, heads: 2, dim: 16}
train:
  steps: 20
  lr: 3.0e-3
noise:
  fractions: [0, 0.1]
  rates: [0.15, 0.3]
seeds: [0, 1]
smoke:
  train: {steps: 5}
  seeds: [0]
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A tiny project: grammars/small.cfg and sweeps/, the layout the shipped sweeps assume."""
    (tmp_path / "grammars").mkdir()
    (tmp_path / "grammars" / "small.cfg").write_text(GRAMMAR)
    (tmp_path / "sweeps").mkdir()
    return tmp_path


def _write(project: Path, text: str, name: str = "s.yaml") -> Path:
    p = project / "sweeps" / name
    p.write_text(text)
    return p


def _error(path: Path, smoke: bool = False) -> str:
    with pytest.raises(CfglabError) as e:
        load_sweep(path, smoke)
    return str(e.value)


def test_the_grid_is_the_product_of_the_axes(project: Path) -> None:
    plan = expand(load_sweep(_write(project, GOOD)))
    # 2 pe x (clean + 2 noisy) x 2 seeds: clean data appears once whatever the rates
    assert len(plan.trials) == 2 * 3 * 2
    names = [t.name for t in plan.trials]
    assert len(set(names)) == len(names)
    assert "small-rot-f0.1r0.3-s1" in names and "small-abs-clean-s0" in names
    t = plan.trial("small-rot-f0.1r0.3-s1")
    assert t.coordinates == {
        "grammar": "small",
        "size": "L1H2D16",
        "layers": 1,
        "heads": 2,
        "dim": 16,
        "pe": "rot",
        "noise_fraction": 0.1,
        "noise_rate": 0.3,
        "seed": 1,
    }
    config = t.config()  # a valid TrainConfig, with the axes and the train section in it
    assert (config.pe, config.noise_fraction, config.noise_rate, config.seed) == (
        "rot",
        0.1,
        0.3,
        1,
    )
    assert config.steps == 20 and config.lr == 3e-3 and config.layers == 1 and config.threads == 1
    assert Path(config.grammar) == (project / "grammars" / "small.cfg").resolve()


def test_smoke_overrides_are_merged_and_the_name_changes(project: Path) -> None:
    path = _write(project, GOOD)
    smoke = load_sweep(path, smoke=True)
    assert smoke.name == "t-smoke" and smoke.spec.train.steps == 5 and smoke.spec.seeds == [0]
    assert smoke.spec.train.lr == 3e-3  # untouched fields keep the file's values
    full = load_sweep(path)
    assert full.name == "t" and full.spec.train.steps == 20
    assert len(expand(smoke).trials) == 2 * 3


def test_smoke_without_a_smoke_section_is_refused(project: Path) -> None:
    path = _write(project, GOOD.split("smoke:")[0])
    assert "smoke" in _error(path, smoke=True)


def test_unknown_keys_and_bad_values_name_the_field_and_the_line(project: Path) -> None:
    text = GOOD.replace("  lr: 3.0e-3", "  lrr: 3.0e-3\n  batch: -4").replace(
        "pe: [abs, rot]", "pe: [abs, rott]"
    )
    path = _write(project, text)
    msg = _error(path)
    lines = text.splitlines()
    lrr_line = next(i for i, x in enumerate(lines, 1) if "lrr" in x)
    batch_line = next(i for i, x in enumerate(lines, 1) if "batch" in x)
    pe_line = next(i for i, x in enumerate(lines, 1) if "rott" in x)
    assert f"{path}:{lrr_line}:3: train.lrr: unknown field" in msg
    assert f"{path}:{batch_line}:" in msg and "train.batch:" in msg
    assert f"{path}:{pe_line}:" in msg and "model.pe.1:" in msg


def test_errors_in_the_smoke_section_point_into_it(project: Path) -> None:
    path = _write(project, GOOD.replace("train: {steps: 5}", "train: {steps: five}"))
    msg = _error(path)  # refused even without --smoke: a broken smoke section is a broken file
    line = next(i for i, x in enumerate(path.read_text().splitlines(), 1) if "five" in x)
    assert "smoke.train.steps" in msg and f"{path}:{line}:" in msg


def test_fields_the_sweep_sets_are_refused_in_train(project: Path) -> None:
    msg = _error(_write(project, GOOD.replace("  steps: 20", "  steps: 20\n  seed: 3")))
    assert "train.seed: unknown field" in msg


def test_train_section_accepts_every_other_train_config_field(project: Path) -> None:
    loaded = load_sweep(
        _write(
            project,
            GOOD.replace("  steps: 20", '  steps: 20\n  warmup: 7\n  holdout_rule: "A -> 3"'),
        )
    )
    config = expand(loaded).trials[0].config()
    assert config.warmup == 7 and config.holdout_rule == "A -> 3"


def test_task_options_are_checked_against_the_evaluation_functions(project: Path) -> None:
    msg = _error(_write(project, GOOD + "probes: {enabled: true, options: {n_strngs: 3}}\n"))
    assert "probes.options" in msg and "n_strngs" in msg and "n_strings" in msg
    ok = load_sweep(_write(project, GOOD + "probes: {enabled: true, options: {n_strings: 3}}\n"))
    assert ok.spec.task_kinds() == ["evaluate", "probes"]


def test_grammar_entries_resolve_by_name_or_path(project: Path, monkeypatch) -> None:
    sweep_file = project / "sweeps" / "x.yaml"
    monkeypatch.chdir(project.parent)  # not the project: found beside the sweep file's parent
    assert resolve_grammar("small", sweep_file) == (project / "grammars" / "small.cfg").resolve()
    assert resolve_grammar("grammars/small.cfg", sweep_file).name == "small.cfg"
    with pytest.raises(CfglabError, match="not found"):
        resolve_grammar("nope", sweep_file)


def test_duplicate_seeds_and_bad_probabilities_are_refused(project: Path) -> None:
    assert "seeds" in _error(_write(project, GOOD.replace("seeds: [0, 1]", "seeds: [1, 1]")))
    assert "noise.fractions" in _error(_write(project, GOOD.replace("[0, 0.1]", "[0, 1.5]")))


@settings(max_examples=40, deadline=None)
@given(
    pes=st.lists(st.sampled_from([pe.value for pe in PE]), min_size=1, max_size=4, unique=True),
    fractions=st.lists(st.sampled_from([0.0, 0.05, 0.1, 0.5]), min_size=1, max_size=3, unique=True),
    rates=st.lists(st.sampled_from([0.1, 0.15, 0.3]), min_size=1, max_size=2, unique=True),
    seeds=st.lists(st.integers(0, 99), min_size=1, max_size=3, unique=True),
    dims=st.lists(st.sampled_from([16, 32, 64]), min_size=1, max_size=2, unique=True),
)
def test_grid_size_names_and_coordinates_for_any_axes(
    tmp_path_factory, pes, fractions, rates, seeds, dims
) -> None:
    root = tmp_path_factory.mktemp("grid")
    (root / "small.cfg").write_text(GRAMMAR)
    doc = {
        "name": "g",
        "grammars": [str(root / "small.cfg")],
        "model": {"pe": pes, "size": [{"layers": 1, "heads": 2, "dim": d} for d in dims]},
        "noise": {"fractions": fractions, "rates": rates},
        "seeds": seeds,
    }
    (root / "g.yaml").write_text(yaml.safe_dump(doc))
    plan = expand(load_sweep(root / "g.yaml"))
    noisy = [f for f in fractions if f > 0]
    pairs = (1 if 0.0 in fractions else 0) + len(noisy) * len(rates)
    assert len(plan.trials) == len(pes) * len(dims) * pairs * len(seeds)
    assert len({t.name for t in plan.trials}) == len(plan.trials)
    expected = set(itertools.product(pes, dims, seeds))
    assert {
        (t.coordinates["pe"], t.coordinates["dim"], t.coordinates["seed"]) for t in plan.trials
    } == expected
    for t in plan.trials:
        c = t.coordinates
        assert f"-{c['pe']}-" in t.name and t.name.endswith(f"-s{c['seed']}")
        assert (c["noise_fraction"] == 0) == ("clean" in t.name)
        assert (len(dims) > 1) == (f"D{c['dim']}" in t.name)
        TrainConfig(**t.train)


SHIPPED = sorted((REPO / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
@pytest.mark.parametrize("smoke", [False, True])
def test_shipped_sweeps_load_and_expand(path: Path, smoke: bool) -> None:
    loaded = load_sweep(path, smoke)
    spec = loaded.spec
    if smoke:  # the smoke section is a CPU check: no GPU asked for, short training
        assert spec.resources.gpu == 0 and spec.train.steps <= 200
    missing = [g for g in spec.grammars if not _resolvable(g, path)]
    if missing:
        pytest.skip(f"grammar file(s) not in grammars/ yet: {missing}")
    plan = expand(loaded)
    assert plan.trials and all(TrainConfig(**t.train) for t in plan.trials)


def _resolvable(entry: str, sweep_file: Path) -> bool:
    try:
        resolve_grammar(entry, sweep_file)
        return True
    except CfglabError:
        return False


def test_shipped_quick_sweep_is_the_demo_grid() -> None:
    spec = load_sweep(REPO / "sweeps" / "quick.yaml").spec
    assert spec.grammars == ["mini"] and spec.model.pe == ["abs", "rot"] and spec.seeds == [0]
    assert spec.noise.pairs() == [(0.0, 0.0), (0.1, 0.15)]
    assert spec.resources.threads == 1 and spec.max_concurrent == 2
    assert spec.robustness.enabled and spec.robustness.rates == [0.15] and spec.probes.enabled


@pytest.mark.parametrize("name", ["implicit.yaml", "implicit-cpu.yaml"])
def test_shipped_implicit_sweeps_train_implicit_grammars_and_measure_their_embeddings(
    name: str,
) -> None:
    """Result 10's sweeps (issue 22): every grammar has bags, the embedding task runs on every
    trial (with the probes at the embedding layer), and the report opens with the paper table."""
    from cfglab.grammar.dsl import load_grammar
    from cfglab.sweep.tasks import applies

    for smoke in (False, True):
        loaded = load_sweep(REPO / "sweeps" / name, smoke)
        spec, plan = loaded.spec, expand(loaded)
        assert spec.embedding.enabled and "embedding" in spec.task_kinds()
        assert spec.report.paper_table and 0 in (spec.probes.layers or [0])
        assert all(load_grammar(p).hidden for p in plan.grammars.values())
        assert all(applies("embedding", t.train) for t in plan.trials)
    full = expand(load_sweep(REPO / "sweeps" / name))
    stems = set(full.grammars)
    assert any("disjoint" in g for g in stems) and any("overlap" in g for g in stems)


def test_embedding_options_are_checked_and_ordinary_runs_skip_the_task(project: Path) -> None:
    from cfglab.sweep.tasks import applies

    msg = _error(_write(project, GOOD + "embedding: {enabled: true, options: {plot: false}}\n"))
    assert "embedding.options" in msg and "plot" in msg and "plots" in msg
    plan = expand(load_sweep(_write(project, GOOD + "embedding: {enabled: true}\n")))
    assert plan.spec.task_kinds() == ["evaluate", "embedding"]
    assert not applies("embedding", plan.trials[0].train)  # small.cfg has no bags


def test_cli_bad_sweep_file_exits_1_with_the_field_path_and_no_traceback(project: Path) -> None:
    path = _write(project, GOOD.replace("  lr: 3.0e-3", "  lr: fast"))
    proc = subprocess.run(
        [sys.executable, "-m", "cfglab", "sweep", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    line = next(i for i, x in enumerate(path.read_text().splitlines(), 1) if "fast" in x)
    assert "train.lr" in proc.stderr and f":{line}:" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_resume_accepts_a_plan_written_before_a_field_existed(project: Path) -> None:
    """A sweep started by an older cfglab (its plan lacks a newer TrainConfig field) resumes;
    a real change to the grid is still refused."""
    import json

    from cfglab.sweep.tune import prepare

    path = _write(project, GOOD + "storage: " + str(project / "out") + "\n")
    sweep, _, _, _ = prepare(load_sweep(path), resume=False, say=print)
    plan = json.loads(sweep.plan_path.read_text())
    for trial in plan:
        del trial["train"]["precision"]  # as plan.json was before --precision
    sweep.plan_path.write_text(json.dumps(plan))
    prepare(load_sweep(path), resume=True, say=print)
    for trial in plan:
        trial["train"]["lr"] = 1e-2
    sweep.plan_path.write_text(json.dumps(plan))
    with pytest.raises(CfglabError, match="sweep file changed"):
        prepare(load_sweep(path), resume=True, say=print)


def test_data_axes_multiply_the_grid_and_name_the_runs(project: Path) -> None:
    text = GOOD + 'data: {align_windows: [true, false], holdout_rules: [null, "S -> A B"]}\n'
    plan = expand(load_sweep(_write(project, text)))
    assert len(plan.trials) == 2 * 3 * 2 * 4
    t = plan.trial("small-rot-clean-any-ho1-s0")
    assert t.coordinates["align_windows"] is False and t.coordinates["holdout_rule"] == "S -> A B"
    config = t.config()
    assert config.align_windows is False and config.holdout_rule == "S -> A B"
    assert plan.trial("small-rot-clean-bos-full-s0").config().holdout_rule is None
    one = expand(load_sweep(_write(project, GOOD + "data: {align_windows: false}\n")))
    assert len(one.trials) == 12 and not one.trials[0].config().align_windows
    assert "any" not in one.trials[0].name  # a single value names nothing


def test_a_bad_holdout_rule_in_the_data_axis_is_located(project: Path) -> None:
    with pytest.raises(CfglabError, match="holdout_rules"):
        load_sweep(_write(project, GOOD + "data: {holdout_rules: [S A B]}\n"))


def test_holdout_rules_can_be_given_per_grammar(project: Path) -> None:
    text = GOOD + 'data: {holdout_rules: {small: [null, "S -> A B"], other: ["X -> Y"]}}\n'
    plan = expand(load_sweep(_write(project, text)))
    assert len(plan.trials) == 12 * 2
    assert plan.trial("small-rot-clean-ho1-s0").config().holdout_rule == "S -> A B"
    assert plan.trial("small-rot-clean-full-s0").coordinates["holdout_rule"] is None


def test_the_encoder_position_encoding_is_a_grid_axis_of_the_mlm_trials(project: Path) -> None:
    text = "name: enc\ngrammars: [small]\nmodel: {pe: [rot, mlm], mlm_pe: [rel, abs]}\n"
    plan = expand(load_sweep(_write(project, text)))
    got = {t.name: (t.coordinates["pe"], t.config().mlm_pe) for t in plan.trials}
    assert got == {
        "small-rot-clean-s0": ("rot", "rel"),
        "small-mlm_rel-clean-s0": ("mlm", "rel"),
        "small-mlm_abs-clean-s0": ("mlm", "abs"),
    }
    one = expand(load_sweep(_write(project, text.replace("[rel, abs]", "rel"), "one.yaml")))
    assert [t.name for t in one.trials] == ["small-rot-clean-s0", "small-mlm-clean-s0"]


def test_canon_is_a_grid_axis_of_the_decoders(project: Path) -> None:
    text = 'name: c\ngrammars: [small]\nmodel: {pe: [none, mlm], canon: ["", abcd]}\n'
    plan = expand(load_sweep(_write(project, text)))
    got = {t.name: (t.coordinates.get("canon"), t.config().canon) for t in plan.trials}
    assert got == {
        "small-none-clean-s0": ("", ""),
        "small-none-cABCD-clean-s0": ("ABCD", "ABCD"),
        "small-mlm-clean-s0": ("", ""),  # an encoder takes no Canon layers
    }
    plain = expand(load_sweep(_write(project, "name: p\ngrammars: [small]\n", "p.yaml")))
    assert "canon" not in plain.trials[0].coordinates  # no axis: coordinates as before
    bad = _error(_write(project, text.replace("abcd", "AQ"), "bad.yaml"))
    assert "model.canon" in bad and 'subset of "ABCD"' in bad
    in_train = GOOD.replace("  lr: 3.0e-3\n", "  lr: 3.0e-3\n  canon: A\n")
    assert "train.canon" in _error(_write(project, in_train, "t.yaml"))  # the model's axis


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ("{optimizer: sgd}", "optimizer 'sgd'"),
        ("{betas: [0.9, 1.5]}", "betas"),
        ("{heads: many}", "heads"),
        ("{decay: 0.1}", "decay"),
    ],
)
def test_bad_probe_settings_fail_at_load_time_naming_the_field(
    project: Path, settings: str, named: str
) -> None:
    text = GOOD + f"probes:\n  enabled: true\n  options:\n    settings: {settings}\n"
    msg = _error(_write(project, text))
    assert "settings" in msg and named in msg, msg


def test_pe_yaml_probe_recipe_is_the_reported_one() -> None:
    """sweeps/pe.yaml's probe: AdamW lr 3e-3, β (0.9, 0.98), decay 0.001, batch 60, 30k steps,
    no early stopping (the recipe reproductions report; unconfirmed against the paper)."""
    from cfglab.interpret.probes import probe_settings

    root = Path(__file__).resolve().parents[1]
    spec = load_sweep(root / "sweeps" / "pe.yaml").spec
    cfg = probe_settings(dict(spec.probes.options["settings"]))
    assert (cfg.optimizer, cfg.lr, tuple(cfg.betas), cfg.weight_decay) == (
        "adamw",
        3e-3,
        (0.9, 0.98),
        1e-3,
    )
    assert (cfg.batch, cfg.steps, cfg.patience, cfg.keep_best) == (60, 30000, 0, False)
    assert (cfg.heads, cfg.pos_dim) == (16, 1024)
