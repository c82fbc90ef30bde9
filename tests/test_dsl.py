"""The grammar DSL: reading, the canonical writer, located errors, bounds, and a fuzzer."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cfglab.errors import CfglabError, LocatedError, LocatedErrors
from cfglab.grammar import dsl
from cfglab.grammar.core import Grammar, Rule
from cfglab.grammar.dsl import format_grammar, load_grammar, parse_grammar, save_grammar

REPO = Path(__file__).resolve().parents[1]

SMALL = """# a small grammar
#   with an indented header line
grammar small
start S
terminals "a" "b" "c"
S -> A B [0.25] | "a" C   # a comment after a rule
A -> "a" | "b" "c" [3]
B -> C C
C -> "c"
S -> "b"
"""


# --- reading -------------------------------------------------------------------------------
def test_parse_small_grammar() -> None:
    g = parse_grammar(SMALL, "small.cfg")
    assert g.name == "small" and g.start == "S"
    assert g.terminals == ("a", "b", "c")
    assert g.rules_of("S") == (
        Rule("S", ("A", "B"), 0.25),
        Rule("S", ("a", "C")),
        Rule("S", ("b",)),
    )  # the later `S ->` line is merged in
    assert g.rules_of("A") == (Rule("A", ("a",)), Rule("A", ("b", "c"), 3.0))
    assert g.nonterminals == ("S", "A", "B", "C")
    assert g.header == ("a small grammar", "  with an indented header line")


def test_terminal_order_is_first_appearance_without_a_declaration() -> None:
    g = parse_grammar('grammar g\nstart S\nS -> "z" A | "y"\nA -> "x" "z"\n')
    assert g.terminals == ("z", "y", "x")


def test_declared_terminal_order_wins_and_unused_terminals_are_kept() -> None:
    g = parse_grammar('grammar g\nstart S\nterminals "c" "b" "a" "unused"\nS -> "a" "b" "c"\n')
    assert g.terminals == ("c", "b", "a", "unused")


def test_keywords_are_names_after_the_first_word() -> None:
    g = parse_grammar(
        'grammar start\nstart start\nstart -> grammar terminals\ngrammar -> "g"\nterminals -> "t"\n'
    )
    assert g.name == "start" and g.start == "start"
    assert g.rules[0] == Rule("start", ("grammar", "terminals"))


def test_escapes_in_terminals() -> None:
    g = parse_grammar(
        r"grammar g" "\nstart S\n" r'S -> "q\"" "b\\" "\n\t\r" "\x41\u00e9\U0001F600" "ä"' "\n"
    )
    assert g.terminals == ('q"', "b\\", "\n\t\r", "Aé\U0001f600", "ä")


def test_source_is_set_by_load_grammar_only(tmp_path: Path) -> None:
    path = tmp_path / "small.cfg"
    path.write_text(SMALL, encoding="utf-8")
    assert load_grammar(path).source == str(path)
    assert parse_grammar(SMALL).source is None
    assert load_grammar(path) == parse_grammar(SMALL)


def test_crlf_and_a_byte_order_mark_are_read(tmp_path: Path) -> None:
    path = tmp_path / "crlf.cfg"
    path.write_bytes(b"\xef\xbb\xbf" + SMALL.replace("\n", "\r\n").encode())
    assert load_grammar(path) == parse_grammar(SMALL)


# --- the canonical writer ------------------------------------------------------------------
def test_format_is_canonical_text() -> None:
    text = format_grammar(parse_grammar(SMALL))
    assert text.startswith("# a small grammar\n#   with an indented header line\ngrammar small\n")
    assert 'terminals "a" "b" "c"\n' in text
    assert 'S -> A B [0.25] | "a" C | "b"\n' in text
    assert "[1.0]" not in text  # weight 1 is the default and is not written
    assert format_grammar(parse_grammar(text)) == text


def test_format_separates_the_levels_of_a_layered_grammar() -> None:
    g = parse_grammar('grammar g\nstart S\nS -> A B\nA -> "a"\nB -> "b"\n')
    assert format_grammar(g).endswith('S -> A B\n\nA -> "a"\nB -> "b"\n')


@pytest.mark.parametrize(
    ("g", "why"),
    [
        (Grammar("bad name", "S", ("a",), (Rule("S", ("a",)),)), "not an identifier"),
        (Grammar("g", "S", ("a",), (Rule("S", ("a",)), Rule("1X", ("a",)))), "not an identifier"),
        (Grammar("g", "S", ("a",), (Rule("S", ()),)), "ε-rules are not supported"),
        (Grammar("g", "S", ("a",), (Rule("S", ("a",), 0.0),)), "not a positive finite number"),
        (Grammar("g", "S", ("a",), (Rule("S", ("a",), math.inf),)), "not a positive finite number"),
        (Grammar("g", "S", ("a",), (Rule("S", ("B",)),)), "neither a terminal nor a nonterminal"),
        (Grammar("g", "T", ("a",), (Rule("S", ("a",)),)), "has no rules"),
        (Grammar("g", "S", ("a", ""), (Rule("S", ("a",)),)), "non-empty string"),
        (Grammar("g", "S", ("S",), (Rule("S", ("S",)),)), "both a terminal and a nonterminal"),
        (Grammar("g", "S", ("a",), (Rule("S", ("a",)), Rule("S", ("a",), 2.0))), "duplicate rule"),
        (
            Grammar("g", "S", ("a", "b"), (Rule("S", ("a",), 1e300), Rule("S", ("b",), 1e-30))),
            "negligible beside the others",
        ),
    ],
)
def test_format_refuses_what_would_not_read_back(g: Grammar, why: str) -> None:
    with pytest.raises(CfglabError, match=re.escape(why)):
        format_grammar(g)


def test_save_grammar_writes_the_canonical_text(tmp_path: Path) -> None:
    g = parse_grammar(SMALL)
    save_grammar(g, tmp_path / "out.cfg")
    assert (tmp_path / "out.cfg").read_text(encoding="utf-8") == format_grammar(g)
    with pytest.raises(CfglabError, match="cannot write"):
        save_grammar(g, tmp_path / "no" / "such" / "dir.cfg")


# Nonterminal names: identifiers (unicode letters too), the keywords included.
_names = st.one_of(
    st.sampled_from(["start", "grammar", "terminals", "N22", "_", "Ä1"]),
    st.from_regex(r"[^\W\d]\w{0,5}", fullmatch=True),
)
# Terminals: any non-empty text, quotes, backslashes, newlines, control characters included.
_terminals = st.one_of(
    st.sampled_from(
        ['"', "\\", '\\"', "a b", "#", "|", "->", "[1]", "\x00", "\u2028", "é", "\U0001f600"]
    ),
    st.text(min_size=1, max_size=5),
)
_weights = st.one_of(
    st.just(1.0), st.floats(min_value=0.0, max_value=1e300, exclude_min=True, allow_nan=False)
)


@st.composite
def odd_grammars(draw: st.DrawFn) -> Grammar:
    nts = draw(st.lists(_names, min_size=1, max_size=5, unique=True))
    terms = draw(
        st.lists(_terminals.filter(lambda t: t not in nts), min_size=1, max_size=5, unique=True)
    )
    symbols = nts + terms
    rules = []
    for nt in nts:
        rhss = draw(
            st.lists(
                st.lists(st.sampled_from(symbols), min_size=1, max_size=4).map(tuple),
                min_size=1,
                max_size=3,
                unique=True,
            )
        )
        weights = [draw(_weights) for _ in rhss]
        assume(all(w / sum(weights) > 0 for w in weights))  # the reader refuses the others
        rules += [Rule(nt, rhs, w) for rhs, w in zip(rhss, weights)]
    rules = draw(st.permutations(rules))  # interleaved left sides must be merged back
    header = draw(
        st.lists(
            st.text(alphabet=st.characters(blacklist_characters="\n\r"), max_size=20), max_size=3
        )
    )
    return Grammar(draw(_names), draw(st.sampled_from(nts)), terms, rules, header=header)


@given(odd_grammars())
@settings(max_examples=300, deadline=None)
def test_parse_format_round_trip(g: Grammar) -> None:
    text = format_grammar(g)
    back = parse_grammar(text)
    assert back == g
    assert [r.weight for r in back.rules] == [float(r.weight) for r in g.rules]  # bit-exact
    assert back.header == tuple(h.rstrip() for h in g.header)
    assert format_grammar(back) == text


# --- errors: each kind, located and explained -----------------------------------------------
HEAD = "grammar g\nstart S\n"

ERRORS = [  # (text, line, col, words in the message, words in the hint)
    (
        'grammar g\nstart S\nS -> A B\nA = "a"\n',
        4,
        3,
        ["unexpected character '='", 'expected "->"'],
        ["A -> B C"],
    ),
    (HEAD + 'S -> "abc\n', 3, 6, ["no closing quote"], ['\\"']),
    (HEAD + 'S -> "a" [0.5\n', 3, 10, ["no closing bracket"], ["[0.5]"]),
    (HEAD + '"a" -> S\n', 3, 1, ['unexpected terminal "a"', "a rule"], ["left side"]),
    ("grammar\n", 1, 8, ["unexpected end of line", "a name for the grammar"], ["grammar NAME"]),
    ("grammar 1x\n", 1, 9, ["unexpected character '1'"], ["letter"]),
    (
        HEAD + "S -> A -> B\n",
        3,
        8,
        [
            'unexpected "->"',
            "a nonterminal name",
            "a quoted terminal",
            '"|"',
            "a weight in brackets",
            "the end of the line",
        ],
        ["line break"],
    ),
    (HEAD + "S -> 'a'\n", 3, 6, ["unexpected character"], ["double quotes"]),
    (HEAD + '1 -> "a"\n', 3, 1, ["unexpected character '1'", "a nonterminal name"], ['"1"']),
    (HEAD + 'S -> "a"\nS B\n', 4, 3, ["unexpected name B", 'expected "->"'], ["A -> B C"]),
    (HEAD + 'S -> "a" \x01\n', 3, 10, ["U+0001"], ["binary"]),
    (
        HEAD + 'terminals a\nS -> "a"\n',
        3,
        11,
        ["unexpected name a", "a quoted terminal"],
        ['terminals "a"'],
    ),
    (HEAD + 'S -> [0.5] "a"\n', 3, 12, ["unexpected terminal"], []),
    (
        '{"sizes": [1, 3]}',
        1,
        1,
        ["unexpected character '{'", "a rule (`A -> ...`) or a"],
        ["JSON", "import-json"],
    ),
    # semantic errors
    (
        HEAD + 'S -> N21 | A\nN22 -> "a"\nA -> "b"\n',
        3,
        6,
        ["undefined nonterminal N21"],
        ["did you mean N22?"],
    ),
    (
        'grammar g\nstart N23\nN22 -> "a"\n',
        2,
        7,
        ["undefined start symbol N23"],
        ["did you mean N22?"],
    ),
    (HEAD + 'S -> a\nA -> "a"\n', 3, 6, ["undefined nonterminal a"], ['the terminal "a"']),
    (
        HEAD + 'S -> "a" | "b"\nS -> "c" | "a" [2]\n',
        4,
        12,
        ['duplicate rule S -> "a"', "line 3"],
        ["remove one"],
    ),
    (
        HEAD + "S -> \n",
        3,
        5,
        ["empty right-hand side", "ε-rules are not supported"],
        ["remove the empty alternative"],
    ),
    (HEAD + 'S -> | "a"\n', 3, 5, ["ε-rules are not supported"], ["remove the empty alternative"]),
    (HEAD + 'S -> "a" |\n', 3, 11, ["ε-rules are not supported"], []),
    (HEAD + "S -> [2]\n", 3, 6, ["ε-rules are not supported"], []),
    (HEAD + 'S -> "a" [0]\n', 3, 10, ["weight [0] is not positive"], ["positive number"]),
    (HEAD + 'S -> "a" [-1.5]\n', 3, 10, ["not positive"], []),
    (HEAD + 'S -> "a" [x]\n', 3, 10, ["weight [x] is not a number"], []),
    (HEAD + 'S -> "a" [nan]\n', 3, 10, ["not a number"], []),
    (HEAD + 'S -> "a" [1e999]\n', 3, 10, ["too large"], []),
    (HEAD + 'S -> "a" []\n', 3, 10, ["empty weight"], []),
    (HEAD + 'S -> "a" [1e-400]\n', 3, 10, ["too small", "rounds to 0"], []),
    (
        HEAD + 'S -> "a" [1e308] | "b" [1e308]\n',
        3,
        24,
        ["weights of S's rules add up past the largest float"],
        ["scale all of this nonterminal's weights"],
    ),
    (
        HEAD + 'S -> "a" [1e300] | "b" [1e-30]\n',
        3,
        24,
        ["weight [1e-30] is negligible", "probability rounds to 0"],
        ["only ratios of weights matter"],
    ),
    (
        HEAD + 'S -> "S"\n',
        3,
        6,
        ['terminal "S" has the same name as the nonterminal S'],
        ["rename"],
    ),
    ('start S\nS -> "a"\n', 1, 1, ["missing the `grammar NAME` line"], ["grammar mygrammar"]),
    ('grammar g\nS -> "a"\n', 1, 1, ["missing the `start SYMBOL` line"], ["start S"]),
    ("grammar g\nstart S\n", 3, 1, ["no rules"], ["S -> A"]),
    ("# only a comment\n", 1, 1, ["empty or only comments"], ["grammar NAME"]),
    ("", 1, 1, ["empty or only comments"], []),
    ('start S\ngrammar g\nS -> "a"\n', 2, 1, ["must come first"], []),
    (HEAD + 'grammar h\nS -> "a"\n', 3, 1, ["second `grammar` line", "line 1"], []),
    (HEAD + 'start T\nS -> "a"\n', 3, 1, ["second `start` line", "line 2"], []),
    (HEAD + 'terminals "a"\nterminals "b"\nS -> "a"\n', 4, 1, ["second `terminals` line"], []),
    (HEAD + 'terminals "a" "a"\nS -> "a"\n', 3, 15, ['terminal "a" is declared twice'], []),
    (
        HEAD + 'terminals "a" "b"\nS -> "a" "c"\n',
        4,
        10,
        ['terminal "c" is not declared'],
        ["terminals"],
    ),
    (HEAD + 'S -> ""\n', 3, 6, ['empty terminal ""'], ["ε"]),
    (HEAD + 'S -> "a\\q"\n', 3, 8, ["unknown escape \\q"], ['\\"']),
    (HEAD + 'S -> "\\UFFFFFFFF"\n', 3, 7, ["unknown escape"], []),
]


@pytest.mark.parametrize(("text", "line", "col", "message", "hint"), ERRORS)
def test_errors_are_located_and_explained(
    text: str, line: int, col: int, message: list[str], hint: list[str]
) -> None:
    with pytest.raises(LocatedError) as info:
        parse_grammar(text, "bad.cfg")
    err = info.value
    assert (err.location.file, err.location.line, err.location.col) == ("bad.cfg", line, col)
    for words in message:
        assert words in err.message
    for words in hint:
        assert words in err.hint
    rendered = err.render()
    assert rendered.startswith(f"bad.cfg:{line}:{col}: error: ")
    _assert_clean(rendered)
    source_line = text.split("\n")[line - 1]
    if source_line.strip():  # the line is echoed with a caret under the column
        shown, caret = rendered.split("\n")[1:3]
        assert caret.index("^") - 4 == col - 1
        assert shown.strip() == source_line.replace("\x01", "?").strip()


def test_every_semantic_error_is_listed_in_one_run() -> None:
    with pytest.raises(LocatedErrors) as info:
        parse_grammar(HEAD + "S -> A | B | C\n", "bad.cfg")
    err = info.value
    assert err.message.startswith("undefined nonterminal A")  # the first one is the error
    assert "more error" not in err.hint
    assert [(e.location.line, e.location.col) for e in err.errors] == [(3, 6), (3, 10), (3, 14)]
    assert [e.message.split(":")[0] for e in err.errors] == [
        f"undefined nonterminal {n}" for n in "ABC"
    ]
    text = err.render()
    assert text.startswith(err.errors[0].render() + "\n")  # the first block reads as before
    assert [line[:11] for line in text.split("\n") if ": error: " in line] == [
        "bad.cfg:3:6",
        "bad.cfg:3:1",
        "bad.cfg:3:1",
    ]
    assert text.endswith("\nbad.cfg: 3 errors")


MIXED = HEAD + (
    'S -> "a" [x] | A\n'  # 3: a bad weight (semantic)
    'A -> "a" "b\n'  # 4: an unclosed terminal (syntax)
    'A = "q"\n'  # 5: not a rule (syntax)
    'A -> "c" [0.5] "d"\n'  # 6: a symbol after the weight (syntax)
    'A -> "e" | "e"\n'  # 7: a duplicate rule (semantic)
)


def test_syntax_errors_are_recovered_at_the_next_line() -> None:
    with pytest.raises(LocatedErrors) as info:
        parse_grammar(MIXED, "bad.cfg")
    err = info.value
    where = [(e.location.line, e.location.col) for e in err.errors]
    assert where == [(3, 10), (4, 10), (5, 3), (6, 16), (7, 12)]
    words = ["weight [x] is not a number", "no closing quote", "unexpected character '='"]
    words += ['unexpected terminal "d"', "duplicate rule"]
    for e, w in zip(err.errors, words, strict=True):
        assert w in e.message and e.hint, (w, e.message)
        assert e.location.source_line == MIXED.split("\n")[e.location.line - 1]
    _assert_clean(err.render())
    # each syntax error reads as it did alone: the same message and hint at the same place
    alone = HEAD + 'S -> "z"\nA = "q"\n'
    with pytest.raises(LocatedError) as single:
        parse_grammar(alone, "bad.cfg")
    assert (single.value.message, single.value.hint) == (err.errors[2].message, err.errors[2].hint)


def test_whole_file_checks_wait_for_the_syntax_errors() -> None:
    """After a broken line, "undefined A" may only mean A's rule was on it: not said."""
    with pytest.raises(LocatedError) as info:
        parse_grammar(HEAD + 'S -> A "a"\nA = "a"\n', "bad.cfg")
    text = info.value.render()
    assert "undefined nonterminal" not in text
    assert text.count(": error: ") == 1 and "bad.cfg:4:3: error: unexpected character" in text
    note = "undefined names and missing lines are checked once the syntax errors are fixed"
    assert text.endswith(f"bad.cfg: 1 error; {note}")


def test_many_errors_are_capped_and_counted() -> None:
    from cfglab.errors import MAX_LISTED

    n = MAX_LISTED + 15
    with pytest.raises(LocatedErrors) as info:
        parse_grammar(HEAD + "S -> " + " | ".join(f"U{i}" for i in range(n)) + "\n", "bad.cfg")
    err = info.value
    assert len(err.errors) == MAX_LISTED and err.unlisted == 15
    assert err.render().endswith(f"bad.cfg: {n} errors (15 more not listed)")
    bad_lines = "".join(f"X{i} = 1\n" for i in range(2 * dsl.MAX_SYNTAX_ERRORS))
    with pytest.raises(LocatedErrors) as syntax:
        parse_grammar(HEAD + bad_lines, "bad.cfg")
    lines = [e.location.line for e in syntax.value.errors]
    assert lines == list(range(3, 3 + min(dsl.MAX_SYNTAX_ERRORS, MAX_LISTED)))


def test_tabs_keep_the_caret_under_the_column() -> None:
    with pytest.raises(LocatedError) as info:
        parse_grammar(HEAD + '\tS ->\t"a" = \n')
    shown, caret = info.value.render().split("\n")[1:3]
    assert shown[caret.index("^")] == "="


def _assert_clean(text: str, source: str = "") -> None:
    """No parser internals in what a user reads (beyond the user's own text echoed back: a
    fuzzed file may itself contain "$END")."""
    for internal in ("__ANON", "_NL", "$END", "Token(", "Tree(", "Traceback"):
        assert internal not in text or internal in source, text


# --- bounds --------------------------------------------------------------------------------
def test_too_many_rules_is_refused_early(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dsl, "MAX_RULES", 5)
    text = HEAD + "".join(f'A{i} -> "a"\n' for i in range(6))
    with pytest.raises(LocatedError, match="more than 5 rules") as info:
        parse_grammar(text)
    assert info.value.location.line == 8  # stopped at the sixth rule


def test_too_many_symbols_is_refused_early(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dsl, "MAX_TOKENS", 100)
    with pytest.raises(LocatedError, match="more than 100 symbols"):
        parse_grammar(HEAD + "S -> " + '"a" ' * 200)


def test_oversized_text_and_file_are_refused(tmp_path: Path) -> None:
    big = HEAD + "#" * dsl.MAX_BYTES
    with pytest.raises(CfglabError, match="limit"):
        parse_grammar(big)
    path = tmp_path / "big.cfg"
    path.write_text(big, encoding="utf-8")
    with pytest.raises(CfglabError, match=re.escape(str(path))):
        load_grammar(path)


@pytest.mark.parametrize("unit", ["|", "A ", '"a" ', "\nA -> B", "[1]", "\n"])
def test_worst_case_inputs_finish_quickly(unit: str) -> None:
    text = HEAD + "S -> " + unit * ((dsl.MAX_BYTES - 30) // len(unit))
    began = time.perf_counter()
    try:
        parse_grammar(text)  # a long rule of terminals is legal; the others are refused
    except CfglabError as err:
        assert "more than" in str(err) or "ε-rules" in str(err) or "weight" in str(err)
    assert time.perf_counter() - began < 60  # ~2 s on an idle 2-core machine; a hang never ends


# --- load_grammar: files -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "no such file"),
        ("dir", "is a directory"),
        (b"", "the file is empty"),
        (b"  \n\n", "the file is empty"),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00junk", "binary file"),
        (b'grammar g\nstart S\nS -> "\xe9"\n', "not UTF-8"),
    ],
)
def test_load_grammar_file_problems(
    tmp_path: Path, content: bytes | str | None, words: str
) -> None:
    path = tmp_path / "g.cfg"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CfglabError) as info:
        load_grammar(path)
    assert words in str(info.value) and str(path) in str(info.value)


def test_not_utf8_is_located(tmp_path: Path) -> None:
    path = tmp_path / "latin1.cfg"
    path.write_bytes(b'grammar g\nstart S\nS -> "caf\xe9"\n')
    with pytest.raises(LocatedError) as info:
        load_grammar(path)
    assert (info.value.location.line, info.value.location.col) == (3, 10)


def test_load_grammar_refuses_devices() -> None:
    with pytest.raises(CfglabError, match="not a regular file"):
        load_grammar("/dev/zero")  # would never end if read


# --- the fuzzer ----------------------------------------------------------------------------
def _seed_texts() -> list[str]:
    seeds = [SMALL, HEAD + 'S -> A "q\\"" [2.5] | "\\\\" B\nA -> "é" | B B\nB -> "x"\n']
    for name in ("cfg3b", "cfg3f", "cfg3h"):
        path = REPO / "grammars" / f"{name}.cfg"
        if path.exists():
            seeds.append(path.read_text(encoding="utf-8"))
    return seeds


SEEDS = _seed_texts()
JUNK = st.one_of(
    st.sampled_from(
        [
            '"',
            "\\",
            "[",
            "]",
            "|",
            "->",
            "-",
            ">",
            "#",
            "\n",
            "\r",
            "\t",
            " ",
            "[0]",
            "[-1]",
            "[x",
            '""',
            "grammar",
            "start",
            "terminals",
            "N22",
            "N99",
            "ε",
            "\x00",
            "\x1b",
            "\ufeff",
            "\u2028",
            "\udcff",
            "\U0001f600",
            "'",
        ]
    ),
    st.text(max_size=8),
    st.binary(max_size=8).map(lambda b: b.decode("latin-1")),
)


@st.composite
def mutated_texts(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(
            st.sampled_from(
                ["delete", "insert", "duplicate_line", "swap_lines", "truncate", "replace"]
            )
        )
        text = _mutate(draw, text, op)
    return text


def _mutate(draw: st.DrawFn, text: str, op: str) -> str:
    i = draw(st.integers(0, len(text)))
    if op == "delete":
        return text[:i] + text[i + draw(st.integers(1, 10)) :]
    if op == "insert":
        return text[:i] + draw(JUNK) + text[i:]
    if op == "replace":
        return text[:i] + draw(JUNK) + text[i + 1 :]
    if op == "truncate":
        return text[:i]
    lines = text.split("\n")
    a, b = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
    if op == "duplicate_line":
        lines.insert(b, lines[a])
    else:
        lines[a], lines[b] = lines[b], lines[a]
    return "\n".join(lines)


@given(mutated_texts())
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_mutated_grammars_parse_or_fail_cleanly(text: str) -> None:
    try:
        g = parse_grammar(text, "fuzz.cfg")
    except LocatedError as err:
        lines = text.split("\n")
        for each in err.errors if isinstance(err, LocatedErrors) else [err]:
            loc = each.location
            assert loc.file == "fuzz.cfg"
            assert 1 <= loc.line <= len(lines)
            assert 1 <= loc.col <= len(lines[loc.line - 1]) + 1
            assert each.message.strip()
        _assert_clean(err.render(), source=text)
    except CfglabError as err:
        assert str(err).strip()
        _assert_clean(str(err), source=text)
    else:  # whatever parses must also write back and read back the same
        assert parse_grammar(format_grammar(g)) == g


@given(junk=st.binary(max_size=200), prefix=st.sampled_from([b"", SEEDS[0].encode()]))
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_fuzz_files_of_junk_bytes(tmp_path: Path, junk: bytes, prefix: bytes) -> None:
    path = tmp_path / "junk.cfg"  # rewritten by every example
    path.write_bytes(prefix + junk)
    try:
        g = load_grammar(path)
    except CfglabError as err:
        assert str(path) in str(err)
        _assert_clean(str(err), source=junk.decode("latin-1"))
    else:
        assert g.source == str(path)
