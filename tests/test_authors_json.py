"""The authors' JSON format: import, export, their round trip, malformed files, and the CLI."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from authors import AUTHORS_JSON
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import layered_grammars
from typer.testing import CliRunner

from cfglab.cli import app
from cfglab.errors import CfglabError, LocatedError
from cfglab.grammar.authors_json import (
    from_authors_json,
    load_authors_json,
    to_authors_json,
)
from cfglab.grammar.core import Grammar, Rule
from cfglab.grammar.dsl import format_grammar, parse_grammar

REPO = Path(__file__).resolve().parents[1]


ANCHORS = AUTHORS_JSON
NAMES = sorted(p.stem for p in ANCHORS.glob("*.json"))


def _read(name: str) -> dict:
    return json.loads((ANCHORS / f"{name}.json").read_text())


def _structure(data: dict) -> tuple:
    """What defines the grammar in an authors' file (names and bookkeeping aside)."""
    return (
        data["sizes"],
        data["idx"],
        [[node["children"] for node in level] for level in data["all"]],
    )


# --- import and export ---------------------------------------------------------------------
def test_all_nine_anchors_are_there() -> None:
    assert (
        sorted(["cfg3b", "cfg3i", "cfg3h", "cfg3g", "cfg3f", "cfg3e1", "cfg3e2", "cfg3j", "cfg3k"])
        == NAMES
    )


@pytest.mark.parametrize("name", NAMES)
def test_import_export_import_is_the_identity(name: str) -> None:
    data = _read(name)
    g = from_authors_json(data, name)
    exported = to_authors_json(g)
    assert _structure(exported) == _structure(data)
    for key in ("num_sym", "eos_token", "depth"):
        assert exported[key] == data[key]
    for ours, theirs in zip(exported["all"], data["all"]):
        assert [(n["id"], n["name"], n["depth"]) for n in ours] == [
            (n["id"], n["name"], n["depth"]) for n in theirs
        ]
    again = from_authors_json(json.loads(json.dumps(exported)), name)
    assert again == g
    assert parse_grammar(format_grammar(g)) == g


def test_imported_names_are_the_authors_ids() -> None:
    g = from_authors_json(_read("cfg3b"), "cfg3b")
    assert g.start == "N22" and g.terminals == ("1", "2", "3")
    assert g.rules_of("N22") == (Rule("N22", ("N21", "N20")), Rule("N22", ("N20", "N19")))
    assert g.rules_of("N7") == (Rule("N7", ("3", "1")), Rule("N7", ("1", "2", "3")))
    assert "6 levels of nonterminals (1,3,3,3,3,3 per level) over 3 terminals" in g.header[0]


def test_unreachable_nonterminals_keep_their_level() -> None:
    """cfg3e1 has nonterminals the start symbol never reaches; export puts them back in place."""
    g = from_authors_json(_read("cfg3e1"), "cfg3e1")
    unreachable = [nt for nt in g.nonterminals if nt not in g.levels]
    assert unreachable  # the property this test is about
    assert "unreachable" in g.header[0]
    assert _structure(to_authors_json(g)) == _structure(_read("cfg3e1"))


@given(layered_grammars(max_levels=4, max_width=3, max_terminals=4))
@settings(max_examples=100, deadline=None)
def test_export_of_any_layered_grammar_reads_back(g: Grammar) -> None:
    exported = to_authors_json(g)
    n_terms = len(g.terminals)
    assert exported["idx"][-1] == list(range(1, n_terms + 1))
    # the authors' numbering: nonterminals above eos/mask/sep, counted from the bottom level up
    nt_ids = [i for level in reversed(exported["idx"][:-1]) for i in level]
    assert nt_ids == list(range(n_terms + 4, n_terms + 4 + len(nt_ids)))
    back = from_authors_json(exported, "back")
    assert len(back.rules) == len(g.rules)
    assert to_authors_json(back) == exported


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('grammar g\nstart S\nS -> A "a"\nA -> "a"\n', "not layered"),
        ('grammar g\nstart S\nS -> A | "a"\nA -> "b"\n', "not layered"),
        ('grammar g\nstart S\nS -> A\nA -> S | "a"\n', "recursive"),
        ('grammar g\nstart S\nS -> A\nA -> "a" [2] | "b"\n', "different weights"),
        ('grammar g\nstart S\nS -> "a"\nB -> C\nC -> D\nD -> "a"\n', "higher than the start"),
    ],
)
def test_export_refuses_what_the_format_cannot_say(text: str, why: str) -> None:
    with pytest.raises(CfglabError, match=why) as info:
        to_authors_json(parse_grammar(text))
    assert "cannot export grammar g to the authors' JSON format" in str(info.value)


def test_export_keeps_equal_weights() -> None:
    g = parse_grammar('grammar g\nstart S\nS -> A [2] | B [2]\nA -> "a"\nB -> "b"\n')
    assert to_authors_json(g)["all"][0][0]["children"] == [[0], [1]]


# --- malformed input -----------------------------------------------------------------------
def _broken(edit) -> dict:
    data = copy.deepcopy(_read("cfg3b"))
    edit(data)
    return data


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda d: d.pop("all"), "the top level: missing the key 'all'"),
        (lambda d: d.pop("sizes"), "missing the key 'sizes'"),
        (lambda d: d.__setitem__("sizes", "7"), "sizes: expected a list, found a string"),
        (lambda d: d["sizes"].__setitem__(2, True), "sizes[2]: expected a whole number"),
        (lambda d: d["sizes"].__setitem__(0, 2), "sizes[0]: level 0 must hold exactly one"),
        (lambda d: d["sizes"].__setitem__(1, 4), "idx[1]: expected 4 entries"),
        (lambda d: d["idx"][3].__setitem__(1, 22), "idx[3][1]: id 22 is used twice"),
        (lambda d: d["idx"][3].__setitem__(1, "x"), "idx[3][1]: expected a whole number"),
        (lambda d: d.__setitem__("num_sym", 4), "num_sym: 4 terminals"),
        (
            lambda d: d["all"][2][1]["children"][0].__setitem__(1, 3),
            "all[2][1].children[0][1]: index 3 is out of range",
        ),
        (
            lambda d: d["all"][2][1]["children"][0].__setitem__(1, -1),
            "all[2][1].children[0][1]: expected a number ≥ 0",
        ),
        (
            lambda d: d["all"][2][1]["children"].__setitem__(0, []),
            "all[2][1].children[0]: an empty rule",
        ),
        (
            lambda d: d["all"][2][1]["children"].__setitem__(1, d["all"][2][1]["children"][0]),
            "all[2][1].children[1]: duplicate rule",
        ),
        (lambda d: d["all"][2][1].__setitem__("children", []), "a nonterminal with no rules"),
        (lambda d: d["all"][2][1].pop("children"), "all[2][1]: missing the key 'children'"),
        (
            lambda d: d["all"][2].__setitem__(1, None),
            "all[2][1]: expected a JSON object, found null",
        ),
        (lambda d: d["all"].pop(), "all: expected 7 entries"),
    ],
)
def test_malformed_authors_json_names_the_json_path(edit, words: str) -> None:
    with pytest.raises(CfglabError) as info:
        from_authors_json(_broken(edit), "bad", file="bad.json")
    assert str(info.value).startswith("bad.json: ")
    assert words in str(info.value)


def test_not_an_object_and_bad_names() -> None:
    with pytest.raises(CfglabError, match="expected a JSON object, found a list"):
        from_authors_json([1, 2], "x")  # type: ignore[arg-type]
    with pytest.raises(CfglabError, match="not an identifier"):
        from_authors_json(_read("cfg3b"), "3b")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "the file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "binary file"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"sizes": [1, 3]', "invalid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"sizes": [' + b"1" * 5000 + b"]}", "invalid JSON"),
    ],
)
def test_load_authors_json_file_problems(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "g.json"
    path.write_bytes(content)
    with pytest.raises(CfglabError) as info:
        load_authors_json(path)
    assert words in str(info.value) and str(path) in str(info.value)


def test_truncated_json_is_located(tmp_path: Path) -> None:
    text = (ANCHORS / "cfg3f.json").read_text()
    path = tmp_path / "cut.json"
    path.write_text(text[:700])
    with pytest.raises(LocatedError) as info:
        load_authors_json(path)
    assert (info.value.location.line, info.value.location.col) == (1, 701)
    assert "near" in info.value.message and "truncated" in info.value.hint


def test_a_grammar_file_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    path.write_text('grammar g\nstart S\nS -> "a"\n')
    with pytest.raises(LocatedError) as info:
        load_authors_json(path)
    assert (info.value.location.line, info.value.location.col) == (1, 1)
    assert "does not start like JSON" in info.value.hint


def test_load_names_the_grammar_after_the_file(tmp_path: Path) -> None:
    path = tmp_path / "my-cfg.v2.json"
    path.write_text((ANCHORS / "cfg3b.json").read_text())
    g = load_authors_json(path)
    assert g.name == "my_cfg_v2" and g.source == str(path)
    assert "my-cfg.v2.json" in g.header[0]


# --- fuzzing: any value anywhere is either a grammar or one clean error ----------------------
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 30)
    | st.floats(allow_nan=False)
    | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def mutated_json(draw: st.DrawFn) -> dict:
    data = copy.deepcopy(_read(draw(st.sampled_from(["cfg3b", "cfg3h"]))))
    for _ in range(draw(st.integers(1, 3))):
        parent, key = _random_slot(draw, data)
        if draw(st.booleans()) and isinstance(parent, dict):
            parent.pop(key, None)
        else:
            parent[key] = draw(_json_values)
    return data


def _random_slot(draw: st.DrawFn, data: dict) -> tuple:
    """A random (container, key) inside `data`, found by walking down a random path."""
    parent, key = data, draw(st.sampled_from(sorted(data))) if data else "all"
    for _ in range(draw(st.integers(0, 5))):
        child = parent.get(key) if isinstance(parent, dict) else parent[key]
        if isinstance(child, dict) and child:
            parent, key = child, draw(st.sampled_from(sorted(child)))
        elif isinstance(child, list) and child:
            parent, key = child, draw(st.integers(0, len(child) - 1))
        else:
            break
    return parent, key


@given(mutated_json())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_mutated_authors_json(data: dict) -> None:
    try:
        g = from_authors_json(data, "fuzz", file="fuzz.json")
    except CfglabError as err:
        assert str(err).startswith("fuzz.json: ")
    else:
        assert parse_grammar(format_grammar(g)) == g


# --- the commands --------------------------------------------------------------------------
runner = CliRunner()


def test_import_json_prints_the_grammar() -> None:
    result = runner.invoke(app, ["import-json", str(ANCHORS / "cfg3f.json")])
    assert result.exit_code == 0, result.output
    assert parse_grammar(result.stdout) == from_authors_json(_read("cfg3f"), "cfg3f")


def test_import_json_writes_and_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "g.cfg"
    args = [
        "import-json",
        str(ANCHORS / "cfg3b.json"),
        "-o",
        str(out),
        "--name",
        "mine",
        "--note",
        "from the anchors",
    ]
    assert runner.invoke(app, args).exit_code == 0
    text = out.read_text()
    assert text.startswith("# from the anchors\n") and "grammar mine\n" in text
    out.write_text("keep me")
    result = runner.invoke(app, args)
    assert isinstance(result.exception, CfglabError) and "--force" in str(result.exception)
    assert out.read_text() == "keep me"
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0
    assert out.read_text() == text


def test_export_json_prints_the_authors_structure(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg3f.cfg"
    cfg.write_text(format_grammar(from_authors_json(_read("cfg3f"), "cfg3f")))
    result = runner.invoke(app, ["export-json", str(cfg)])
    assert result.exit_code == 0, result.output
    assert _structure(json.loads(result.stdout)) == _structure(_read("cfg3f"))
    out = tmp_path / "out.json"
    assert runner.invoke(app, ["export-json", str(cfg), "-o", str(out)]).exit_code == 0
    assert _structure(json.loads(out.read_text())) == _structure(_read("cfg3f"))
    assert runner.invoke(app, ["export-json", str(cfg), "-o", str(out)]).exit_code != 0


@pytest.mark.parametrize("junk", [b"\x00\x01\x02binary", b'{"sizes": [1, 3], "idx": [[', b""])
def test_cli_prints_one_clean_error_for_junk(tmp_path: Path, junk: bytes) -> None:
    path = tmp_path / "junk.json"
    path.write_bytes(junk)
    for command in ("import-json", "export-json"):
        proc = subprocess.run(
            [sys.executable, "-m", "cfglab", command, str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
        assert proc.returncode == 1
        assert str(path) in proc.stderr and "Traceback" not in proc.stderr
        assert proc.stdout == ""
