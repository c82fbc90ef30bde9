"""Probes, attention and evaluation on a grammar that is not the paper's: a recursive one.

The paper's targets are per tree level; a recursive arithmetic grammar has no levels (its trees
run to dozens of depths), so its probes and attention statistics are keyed by height (↑h, the
h-th nonterminal above a token), and every number that cannot be computed says why.
"""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from eval_support import LONGER, tiny_config

from cfglab.grammar.dsl import parse_grammar
from cfglab.grammar.sample import sample
from cfglab.interpret.targets import (
    HEIGHTS,
    LEVELS,
    MAX_HEIGHT,
    by_height,
    nonterminals_at_one_depth,
    target_kind,
)
from tests.grammars import LAYERED

# Expr -> Expr "+" Term: left-recursive, with brackets nesting it again; subcritical weights.
ARITH = """grammar arith
start Expr
Expr -> Expr "+" Term [1] | Term [2]
Term -> Term "*" Factor [1] | Factor [2]
Factor -> "(" Expr ")" [1] | "x" [3] | "y" [2]
"""

# Not recursive, but B sits at depth 1 under S and at depth 2 under A.
MIXED = """grammar mixed
start S
S -> A B | "a" A
A -> "x" | B "y"
B -> "z" "w"
"""


def test_the_kind_of_targets_follows_the_grammar() -> None:
    assert target_kind(parse_grammar(LAYERED)) == LEVELS
    assert target_kind(parse_grammar(LONGER)) == LEVELS  # terminals at mixed depths only
    assert target_kind(parse_grammar(ARITH)) == HEIGHTS
    assert not nonterminals_at_one_depth(parse_grammar(MIXED))


def test_heights_are_the_path_read_from_the_token_up() -> None:
    g = parse_grammar(ARITH)
    s = sample(g, 40, 3)
    h = by_height(s)
    assert h.depth == MAX_HEIGHT + 1 and (h.ancestors[0] == -1).all()
    for i in range(len(h.tokens)):
        path = [int(a) for a in s.ancestors[:, i] if a >= 0]
        for up in range(1, MAX_HEIGHT + 1):
            want = path[-up] if up <= len(path) else -1
            assert h.ancestors[up, i] == want
            if want >= 0:
                assert h.boundaries[up, i] == s.boundaries[len(path) - up, i]
    # b♯ is the most ancestral height the token ends, so it ends that one and none above
    for i, b in enumerate(h.b_sharp):
        ends = np.flatnonzero(h.boundaries[:, i])
        assert b == (ends.max() if len(ends) else -1)


@cache
def arith_run(pe: str = "rot") -> Path:
    """A tiny model on ARITH with a context of 24: some of its strings do not fit."""
    from cfglab.train import train

    root = Path(tempfile.mkdtemp(prefix="cfglab-anycfg-"))
    atexit.register(shutil.rmtree, root, True)
    (root / "arith.cfg").write_text(ARITH)
    return train(tiny_config(root / "arith.cfg", pe, context=24), root / "run", quiet=True)


def test_probe_on_a_recursive_grammar_is_by_height_with_reasons() -> None:
    from cfglab.interpret.probes import probe_run

    r = probe_run(str(arith_run()), n_strings=40, n_test=20, seed=0, controls=False, plots=False)
    assert r["targets"] == HEIGHTS and "↑" in r["targets_note"]
    levels = r["levels"]["ancestor"] + r["levels"]["boundary"]
    assert levels and max(levels) <= MAX_HEIGHT and min(levels) >= 1
    assert r["level_names"]["1"] == "↑1"
    assert r["ceiling"] is None and r["prefix_ceiling"] is None
    assert "recursive" in r["ceiling_reason"]
    for lv, acc in r["trained"]["1"]["ancestor"].items():
        assert acc is None or 0.0 <= acc <= 1.0, lv
    from cfglab.cli.console import out
    from cfglab.cli.probe_cmds import render_probe

    with out.capture() as cap:
        render_probe(r)
    text = " ".join(cap.get().split())
    assert "by heights — accuracy %" in text and "ceilings not computed: the grammar is" in text
    assert "level 1 (NT2)" not in text and "were left out" in text
    # ↑4 and above never end at a token of ARITH (")" ends the bracketed Factor): said, not shown
    assert r["trained"]["1"]["ancestor_at_end"].get("4", 0) is None
    assert "not shown: ↑4" in text
    n = r["positions"]["ancestor"]
    assert set(n) == {str(v) for v in r["levels"]["ancestor"]} and n["1"] > n["6"] > 0
    if n["6"] < 30:
        assert f"↑6 n={n['6']}" in text


def test_a_non_recursive_grammar_at_mixed_depths_is_by_height_too(tmp_path: Path) -> None:
    from cfglab.interpret.probes import probe_run
    from cfglab.train import train

    (tmp_path / "g.cfg").write_text(MIXED)
    run = train(tiny_config(tmp_path / "g.cfg"), tmp_path / "run", quiet=True)
    r = probe_run(str(run), n_strings=24, n_test=12, seed=0, controls=False, plots=False)
    assert r["targets"] == HEIGHTS and r["ceiling"] is None
    assert "by height" in r["ceiling_reason"] and r["strings"]["dropped_note"] is None


def test_layered_probe_keeps_levels_and_its_ceilings(tmp_path: Path) -> None:
    from cfglab.interpret.probes import probe_run
    from cfglab.train import train

    (tmp_path / "g.cfg").write_text(LAYERED)
    run = train(tiny_config(tmp_path / "g.cfg"), tmp_path / "run", quiet=True)
    r = probe_run(str(run), n_strings=24, n_test=12, seed=0, controls=False, plots=False)
    assert r["targets"] == LEVELS and r["level_names"]["1"] == "NT2"
    assert r["ceiling_reason"] is None and r["ceiling"]["ancestor"]


def test_the_default_cut_is_never_trivial() -> None:
    from cfglab.errors import CfglabError
    from cfglab.evaluate.run import MIN_CUT, choose_cut

    assert choose_cut(np.array([60, 80, 120]), "g")[0] == 50  # the paper's cut50
    assert choose_cut(np.array([8, 9, 12]), "g")[0] == 4  # half the shortest, as before
    lengths = sample(parse_grammar(ARITH), 512, 0).lengths
    assert lengths.min() // 2 < MIN_CUT  # half the shortest would be cut0 or cut1
    cut, why = choose_cut(lengths, "arith")
    assert cut >= MIN_CUT and (lengths > cut).mean() > 0.1 and "median" in why
    with pytest.raises(CfglabError, match="pass --cut"):
        choose_cut(np.array([1, 2, 3, 1, 2, 1, 2, 3, 1, 5, 2, 1]), "short")


def test_evaluate_on_a_recursive_grammar_picks_a_cut_above_one() -> None:
    from cfglab.evaluate.run import evaluate_run

    small = {"n": 8, "threads": 1, "sections": ["accuracy", "robustness"], "write": False}
    r = evaluate_run(str(arith_run()), small)
    assert r["cut"] > 1 and "median" in r["cut_rule"]
    assert set(r["accuracy"]) == {"cut0", f"cut{r['cut']}"}
    assert r["robustness"]["cut"] == r["cut"]


def _counts(note: str) -> tuple[int, int]:
    m = re.match(r"(\d+) of (\d+) sampled strings longer than the context", note)
    assert m, note
    return int(m.group(1)), int(m.group(2))


def test_strings_too_long_for_the_context_are_counted_and_said() -> None:
    from cfglab.interpret.attention import attention_run
    from cfglab.interpret.probes import probe_run

    run = arith_run()
    r = probe_run(str(run), n_strings=40, n_test=20, seed=0, controls=False, plots=False)
    strings = r["strings"]
    assert strings["dropped_too_long"] > 0  # ARITH's strings run past 22 tokens
    assert _counts(strings["dropped_note"]) == (strings["dropped_too_long"], strings["drawn"])
    assert strings["drawn"] >= 60 + strings["dropped_too_long"]
    a = attention_run(str(run), n_strings=30, seed=0, plots=False)
    assert _counts(a["dropped_note"]) == (a["dropped_too_long"], a["drawn"])


def test_evaluate_counts_the_strings_left_out_for_an_abs_context() -> None:
    from cfglab.evaluate.run import evaluate_run

    small = {"n": 8, "kl_strings": 60, "threads": 1, "sections": ["kl"], "write": False}
    kl = evaluate_run(str(arith_run("abs")), small)["kl"]
    out = kl["left_out_too_long"]
    assert out["n"] > 0 and _counts(out["note"]) == (out["n"], out["of"])
    assert kl["n_strings"] == 60 and kl["length_limited_to"] == 23


def test_attention_on_a_recursive_grammar_is_keyed_by_a_few_heights() -> None:
    from cfglab.cli.console import out
    from cfglab.cli.probe_cmds import render_attention
    from cfglab.interpret.attention import attention_run

    a = attention_run(str(arith_run()), n_strings=30, seed=0, plots=True)
    assert a["targets"] == HEIGHTS and a["levels"] == list(range(1, MAX_HEIGHT + 1))
    assert a["level_names"] == {str(h): f"↑{h}" for h in range(1, MAX_HEIGHT + 1)}
    e2e = np.array(a["end_to_end"]["mean_B"], dtype=float)  # (L, H, ℓ', ℓ, r)
    assert e2e.shape[2:4] == (MAX_HEIGHT, MAX_HEIGHT)
    assert np.array(a["offset"]["pairs"])[0].sum() > 0  # ↑1 ends are seen
    assert all(Path(p).stat().st_size > 5_000 for p in a["plots"])
    with out.capture() as cap:
        render_attention(a)
    text = " ".join(cap.get().split())  # the title wraps to the table's width
    assert "mean over heights" in text and "were left out" in text and "↑1 its parent" in text


def test_the_report_names_height_targets_apart_from_levels(tmp_path: Path) -> None:
    from cfglab.sweep.report.plots import _probe_matrix, plot_probes

    def row(name: str, targets: str | None) -> dict:
        layer = {"ancestor": {"1": 0.8, "2": 0.6}}
        probes = {"trained": {"1": layer}, "untrained": {"1": layer}, "ceiling": None}
        if targets:
            probes["targets"] = targets
        return {"run": name, "_results": {"probes": probes}}

    rows = [row("paper", None), row("arith", HEIGHTS)]  # old probe.json: no key, levels
    names, cols, cells = _probe_matrix(rows, "trained")
    assert names == ["paper", "arith"]
    assert cols == ["L1·lvl1", "L1·lvl2", "L1·↑1", "L1·↑2"]
    assert cells[0][2] is None and cells[1][2] == 0.8 and cells[1][0] is None
    assert plot_probes(rows, tmp_path / "probes.png").stat().st_size > 5_000
