from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfglab.errors import CfglabError
from cfglab.grammar.core import Grammar, Rule, Tree
from cfglab.grammar.sample import sample
from tests.strategies import layered_grammars, small_grammars


def _check_tree(g: Grammar, node: Tree) -> None:
    """Every internal node expands by its recorded rule into exactly its children."""
    if not node.children:
        assert g.is_terminal(node.symbol)
        return
    rule = g.rules[node.rule]
    assert rule.lhs == node.symbol
    assert rule.rhs == tuple(c.symbol for c in node.children)
    for c in node.children:
        _check_tree(g, c)


def _node_spans(node: Tree, start: int, depth: int, out: list) -> int:
    """Collect (depth, first, last, symbol) of every nonterminal node; return the end index."""
    if not node.children:
        return start + 1
    end = start
    for c in node.children:
        end = _node_spans(c, end, depth + 1, out)
    out.append((depth, start, end - 1, node.symbol))
    return end


@settings(max_examples=60, deadline=None)
@given(small_grammars(recursive=True), st.integers(0, 2**16))
def test_trees_are_derivations_and_labels_match_them(g: Grammar, seed: int) -> None:
    s = sample(g, 8, seed, max_length=200, max_depth=30)
    assert len(s) == 8
    for i in range(len(s)):
        tree = s.tree(i)
        _check_tree(g, tree)
        assert tree.symbol == g.start
        assert g.encode(tree.leaves()).tolist() == s.string(i).tolist()
        ancestors, boundaries = s.labels(i)
        spans: list = []
        _node_spans(tree, 0, 0, spans)
        expect_anc = np.full_like(ancestors, -1)
        expect_bnd = np.zeros_like(boundaries)
        for depth, first, last, sym in spans:
            expect_anc[depth, first : last + 1] = g.nonterminals.index(sym)
            expect_bnd[depth, last] = True
        assert (ancestors == expect_anc).all()
        assert (boundaries == expect_bnd).all()


@settings(max_examples=60, deadline=None)
@given(small_grammars(recursive=True), st.integers(0, 2**16))
def test_b_sharp_and_ancestor_index_follow_the_tree(g: Grammar, seed: int) -> None:
    """b♯(i) = the shallowest node that i ends; p_d(i) = how many depth-d nodes lie left of i's."""
    s = sample(g, 6, seed, max_length=200, max_depth=30)
    b_sharp, index = s.b_sharp, s.ancestor_index
    for i in range(len(s)):
        spans: list = []
        _node_spans(s.tree(i), 0, 0, spans)
        lo, n = int(s.offsets[i]), len(s.string(i))
        want_sharp = np.full(n, -1)
        want_index = np.full((s.depth, n), -1)
        for depth, _first, last, _ in sorted(spans, reverse=True):  # shallow nodes written last
            want_sharp[last] = depth
        for depth, first, last, _ in spans:
            left = sum(1 for d, f, _, _ in spans if d == depth and f < first)
            want_index[depth, first : last + 1] = left
        assert b_sharp[lo : lo + n].tolist() == want_sharp.tolist()
        assert index[:, lo : lo + n].tolist() == want_index.tolist()


@settings(max_examples=40, deadline=None)
@given(layered_grammars(), st.integers(0, 2**16))
def test_layered_grammars_label_every_level(g: Grammar, seed: int) -> None:
    s = sample(g, 5, seed)
    assert s.depth == g.depth  # one row per nonterminal level
    assert (s.ancestors >= 0).all()
    # the last token of every string closes its ancestor at every level
    ends = s.offsets[1:] - 1
    assert s.boundaries[:, ends].all()


def test_same_seed_same_strings_and_different_seed_differs() -> None:
    g = Grammar(
        "g",
        "S",
        ("a", "b"),
        (Rule("S", ("A", "A")), Rule("A", ("a",)), Rule("A", ("b",)), Rule("A", ("a", "b"))),
    )
    a, b, c = sample(g, 50, 7), sample(g, 50, 7), sample(g, 50, 8)
    assert a.tokens.tolist() == b.tokens.tolist() and (a.ancestors == b.ancestors).all()
    assert a.tokens.tolist() != c.tokens.tolist()


def test_rule_weights_are_followed() -> None:
    g = Grammar("w", "S", ("a", "b"), (Rule("S", ("a",), 3.0), Rule("S", ("b",), 1.0)))
    s = sample(g, 20_000, 0)
    frac_a = float((s.tokens == 0).mean())
    assert abs(frac_a - 0.75) < 0.02  # ~7 standard errors


def test_recursive_grammar_respects_the_bound_and_counts_rejections() -> None:
    g = Grammar("r", "S", ("a", "b"), (Rule("S", ("a", "S", "b"), 2.0), Rule("S", ("a", "b"))))
    s = sample(g, 200, 1, max_length=10)
    assert s.lengths.max() <= 10
    assert s.rejected > 0
    for x in s.strings():
        k = len(x) // 2
        assert x.tolist() == [0] * k + [1] * k


def test_impossible_bound_is_a_clear_error() -> None:
    g = Grammar("r", "S", ("a",), (Rule("S", ("a", "a", "a")),))
    with pytest.raises(CfglabError, match="max_length"):
        sample(g, 3, 0, max_length=2)


def test_uses_rule_marks_strings_whose_tree_has_the_rule() -> None:
    g = Grammar("u", "S", ("a", "b"), (Rule("S", ("A",)), Rule("A", ("a",)), Rule("A", ("b",))))
    s = sample(g, 100, 3)
    uses_a = s.uses_rule(1)
    assert uses_a.tolist() == (s.tokens == 0).tolist()


def test_sample_cli_prints_one_line_per_string_and_never_imports_torch_or_ray() -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys; from cfglab.cli import main; sys.argv=['cfglab','sample',"
        f"'{root / 'grammars' / 'cfg3f.cfg'}','-n','3']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', sorted(m for m in ('torch', 'ray') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[-1] == "HEAVY []"
    strings = out[:-1]
    assert len(strings) == 3 and all(len(s.split()) >= 64 for s in strings)  # cfg3f: >= 64 tokens
