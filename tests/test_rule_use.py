"""cfglab.chart.rules: "some parse tree uses rule R", exact, and the one test training uses."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cfglab.chart.rules import rule_use, samples_using
from cfglab.data.corpus import NoiseConfig, make_chunk
from cfglab.data.vocab import Vocab
from cfglab.evaluate.judge import Judge
from cfglab.grammar.core import Grammar
from cfglab.grammar.dsl import parse_grammar
from cfglab.grammar.sample import sample
from tests.strategies import layered_grammars

# "a a" parses as S -> A A and as S -> B (B -> "a" "a"): its sampled tree may avoid B -> "a" "a".
AMBIGUOUS = """grammar amb
start S
S -> A A | B | A B
A -> "a" | "b"
B -> "a" "a" | "b" A
"""


def _rules_by_string(g: Grammar) -> dict[tuple[str, ...], list[frozenset[int]]]:
    """Every string of a finite grammar, with the rule set of each of its parse trees."""

    def trees(sym: str) -> list[tuple[tuple[str, ...], frozenset[int]]]:
        if g.is_terminal(sym):
            return [((sym,), frozenset())]
        out = []
        for i, rule in enumerate(g.rules):
            if rule.lhs != sym:
                continue
            parts = [((), frozenset([i]))]
            for child in rule.rhs:
                parts = [(y + cy, r | cr) for y, r in parts for cy, cr in trees(child)]
            out += parts
        return out

    by: dict[tuple[str, ...], list[frozenset[int]]] = defaultdict(list)
    for y, rules in trees(g.start):
        by[y].append(rules)
    return by


@settings(max_examples=30, deadline=None)
@given(layered_grammars(max_levels=3, max_width=2), st.data())
def test_some_parse_matches_enumeration(g: Grammar, data: st.DataObject) -> None:
    rule = data.draw(st.integers(0, len(g.rules) - 1))
    by = _rules_by_string(g)
    strings = list(by)[:60]
    got = rule_use(g, rule).uses([g.encode(list(s)) for s in strings])
    want = [any(rule in t for t in by[s]) for s in strings]
    assert got.tolist() == want
    outside = np.zeros(max(map(len, by)) + 1, dtype=np.int64)  # longer than any string
    assert not rule_use(g, rule).uses([outside, np.zeros(0, np.int64)]).any()


def test_judge_training_and_reference_agree_on_an_ambiguous_string() -> None:
    g = parse_grammar(AMBIGUOUS)
    rule = 3  # B -> "a" "a"
    aa = g.encode(["a", "a"])
    assert Judge(g).uses_rule([aa], rule).tolist() == [True]
    s = sample(g, 400, 0)
    sampled, some = s.uses_rule(rule), samples_using(g, s, rule)
    strings = s.strings()
    is_aa = np.array([x.tolist() == aa.tolist() for x in strings])
    assert (some[is_aa]).all() and not sampled[is_aa].all()  # some "a a" trees avoided B -> a a
    assert (some | ~sampled).all()  # the sampled tree's use implies some parse's


def test_training_chunks_hold_no_string_that_can_use_the_rule() -> None:
    g = parse_grammar(AMBIGUOUS)
    rule, vocab = 3, Vocab(len(g.terminals))
    chunk = make_chunk(g, 0, 0, 0, 300, NoiseConfig(), rule)
    pieces = np.split(chunk.tokens, np.flatnonzero(chunk.tokens == vocab.bos)[1:])
    strings = [p[1:-1] for p in pieces]  # BOS x EOS
    assert len(strings) > 50  # most strings can use the rule: fewer than 300 are left
    assert not Judge(g).uses_rule(strings, rule).any()
    assert all(x.tolist() != [0, 0] for x in strings)  # "a a" (ids 0 0) is gone entirely


def test_holdout_rule_is_read_from_a_train_yaml(tmp_path) -> None:
    import pytest

    from cfglab.errors import CfglabError
    from cfglab.runs import TrainConfig, load_train_config

    path = tmp_path / "t.yaml"
    path.write_text('grammar: g.cfg\nholdout_rule: "N14 -> N10 N12"\nalign_windows: false\n')
    config = load_train_config(path)
    assert config.holdout_rule == "N14 -> N10 N12" and config.align_windows is False
    assert TrainConfig.model_fields["holdout_rule"].description  # the generated flag's help
    path.write_text("grammar: g.cfg\nholdout_rule: N14 N10 N12\n")
    with pytest.raises(CfglabError, match="holdout_rule"):
        load_train_config(path)
