"""The hidden terminal as a probe target (issue 22, Result 10): its labels, its ceiling, and a
probe run on a tiny run trained on an implicit grammar that reports it beside its controls."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from eval_support import LONGER, LONGER_IMPLICIT, LONGER_OVERLAP, implicit_run

from cfglab.grammar.dsl import parse_grammar
from cfglab.grammar.sample import sample
from cfglab.interpret.embedding import bag_matrix
from cfglab.interpret.probe_data import hidden_terminal_labels, make_probe_data

# seconds, not a study: the probe's own recipe is tested in test_probes.py
SMALL: dict[str, Any] = {
    "heads": 2,
    "pos_dim": 8,
    "batch": 8,
    "steps": 30,
    "val_strings": 8,
    "eval_every": 10,
    "patience": 2,
}


def test_hidden_terminal_labels_are_the_bag_each_token_was_drawn_from() -> None:
    g = parse_grammar(LONGER_IMPLICIT)
    s = sample(g, 50, np.random.default_rng(0))
    labels = hidden_terminal_labels(s)
    assert labels is not None
    # disjoint bags: the token alone names its bag
    assert (labels == bag_matrix(g).argmax(1)[s.tokens]).all()
    # and the labels spell a string of the hidden CFG, LONGER
    hidden = parse_grammar(LONGER)
    from cfglab.chart.front import Chart

    chart = Chart(hidden)
    for i in range(5):
        lo, hi = s.offsets[i], s.offsets[i + 1]
        spelled = hidden.encode([g.hidden[k] for k in labels[lo:hi]])
        assert chart.accepts([spelled])[0]


def test_probe_data_gains_the_terminal_target_on_implicit_grammars_only() -> None:
    for text, expected in ((LONGER_IMPLICIT, True), (LONGER, False)):
        s = sample(parse_grammar(text), 40, np.random.default_rng(1))
        data = make_probe_data(s, 30)
        terminal = [g for g, t in enumerate(data.targets) if t.kind == "terminal"]
        assert bool(terminal) is expected
        if terminal:
            g = terminal[0]
            assert data.targets[g].classes == 3 and data.ends[g].all()
            assert (data.labels[g] >= 0).all()


@pytest.mark.parametrize("text", [LONGER_IMPLICIT, LONGER_OVERLAP], ids=["disjoint", "overlap"])
def test_probes_on_an_implicit_run_report_the_hidden_terminal(text: str) -> None:
    from cfglab.interpret.probes import probe_run

    run = implicit_run(text)
    result = probe_run(str(run), layers=[0, 1], n_strings=32, n_test=16, settings=SMALL)
    assert result["hidden_terminal"] == {"classes": 3, "hidden": ["a", "b", "c"]}
    for family in ("trained", "untrained"):
        for layer in ("0", "1"):
            scores = result[family][layer]["terminal"]
            assert set(scores) == {"all", "diagonal", "tridiagonal"}
            assert all(0.0 <= v <= 1.0 for v in scores.values())
    ceiling = result["ceiling"]["terminal"]["all"]
    majority = result["majority"]["terminal"]["all"]
    assert majority < ceiling <= 1.0
    if text == LONGER_IMPLICIT:  # a disjoint bag's token names its terminal
        assert ceiling == 1.0
    # the tree targets are still there, numbered as before
    assert result["levels"]["ancestor"] and "terminal" not in result["levels"]


def test_probe_table_renders_the_terminal_target(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cfglab.cli.probe_cmds import render_probe
    from cfglab.interpret.probes import probe_run

    monkeypatch.setenv("COLUMNS", "160")
    result = probe_run(
        str(implicit_run()), layers=[0], n_strings=16, n_test=8, settings=SMALL, controls=False
    )
    render_probe(result)
    text = capsys.readouterr().out
    lines = text[text.index("hidden terminal of each token") :].splitlines()
    header = [w for w in next(l for l in lines if "hidden states" in l).split() if w.isalpha()]
    assert header == ["hidden", "states", "all", "diagonal", "tridiagonal"]
    row = next(line for line in lines if "embedding" in line)
    assert f"{100 * result['trained']['0']['terminal']['all']:.1f}" in row
    assert any("majority" in line for line in lines)
