"""The paper's grammars shipped in grammars/: each one's rules equal the authors' JSON, rule for
rule (read straight from the JSON here, not through cfglab's converter)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from authors import AUTHORS_JSON

from cfglab.grammar.dsl import format_grammar, load_grammar

REPO = Path(__file__).resolve().parents[1]
PAPER_GRAMMARS = ["cfg3b", "cfg3i", "cfg3h", "cfg3g", "cfg3f", "cfg3e1", "cfg3e2", "cfg3j", "cfg3k"]


ANCHORS = AUTHORS_JSON


def _authors_rules(data: dict) -> list[tuple[str, tuple[str, ...]]]:
    """(lhs, rhs) pairs straight from the JSON: N<id> for nonterminals, "<id>" for terminals."""
    idx, levels = data["idx"], data["all"]
    last = len(idx) - 1

    def name(level: int, i: int) -> str:
        return str(idx[level][i]) if level == last else f"N{idx[level][i]}"

    return [
        (name(l, i), tuple(name(l + 1, j) for j in rule))
        for l in range(last)
        for i, node in enumerate(levels[l])
        for rule in node["children"]
    ]


@pytest.mark.parametrize("name", PAPER_GRAMMARS)
def test_shipped_grammar_equals_the_authors_json(name: str) -> None:
    data = json.loads((ANCHORS / f"{name}.json").read_text(encoding="utf-8"))
    g = load_grammar(REPO / "grammars" / f"{name}.cfg")
    assert g.name == name
    assert g.start == f"N{data['idx'][0][0]}"
    assert g.terminals == tuple(str(i) for i in data["idx"][-1])
    assert len(g.terminals) == data["num_sym"]
    assert [(r.lhs, r.rhs) for r in g.rules] == _authors_rules(data)
    assert all(r.weight == 1.0 for r in g.rules)  # the authors draw rules uniformly


@pytest.mark.parametrize("name", PAPER_GRAMMARS)
def test_shipped_grammar_says_where_it_comes_from(name: str) -> None:
    path = REPO / "grammars" / f"{name}.cfg"
    g = load_grammar(path)
    header = "\n".join(g.header)
    for words in (
        "facebookresearch/PhysicsLM4",
        f"data-synthetic-pretrain/Lano-cfg/configs/{name}.json",
        "Apache License 2.0",
        "Meta Platforms",
        "levels of nonterminals",
        "rules per nonterminal",
    ):
        assert words in header
    assert path.read_text(encoding="utf-8") == format_grammar(g)  # kept in canonical form


def test_every_anchor_is_shipped() -> None:
    assert sorted(p.stem for p in ANCHORS.glob("*.json")) == sorted(PAPER_GRAMMARS)
