"""`cfglab posterior`: the JSON layout of `sample --json` with posteriors, invalid lines, and the
located errors `verify` gives."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cfglab.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _run(*args: str, stdin: str = "") -> list[dict]:
    result = runner.invoke(app, ["posterior", *args], input=stdin)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_layout_matches_sample_json_and_puts_the_sampled_labels_at_probability_one() -> None:
    grammar = str(ROOT / "grammars" / "cfg3b.cfg")  # unambiguous: the posterior is the tree
    sampled = runner.invoke(app, ["sample", grammar, "-n", "3", "--seed", "5", "--json"])
    records = [json.loads(line) for line in sampled.stdout.splitlines()]
    lines = "\n".join(" ".join(r["tokens"]) for r in records) + "\n"
    answers = _run(grammar, "--json", stdin=lines)
    assert len(answers) == 3
    for want, got in zip(records, answers):
        assert got["tokens"] == want["tokens"]
        assert len(got["ancestors"]) == len(want["ancestors"])
        for level, row in enumerate(want["ancestors"]):
            for i, nt in enumerate(row):
                cell = got["ancestors"][level][i]
                assert (cell == {}) if nt is None else (abs(cell[nt] - 1) < 1e-9 and len(cell) == 1)
        for level, row in enumerate(want["boundaries"]):
            assert [round(p) for p in got["boundaries"][level]] == row


def test_invalid_lines_and_prefixes() -> None:
    grammar = str(ROOT / "grammars" / "mini.cfg")
    whole, prefix = (
        _run(grammar, "--json", stdin="2 1 3\n"),
        _run(grammar, "--json", "--prefix", stdin="2 1 3\n"),
    )
    assert whole == [{"tokens": ["2", "1", "3"], "valid": False}]  # too short to be a string
    assert "ancestors" in prefix[0] and len(prefix[0]["ancestors"][0]) == 3  # but a prefix
    assert _run(grammar, "--json", "--prefix", stdin="2 1 2\n")[0]["valid"] is False


def test_bad_token_gets_the_located_error_of_verify(tmp_path: Path) -> None:
    f = tmp_path / "s.txt"
    f.write_text("1 2 3\n1 2 zz 3\n")
    result = runner.invoke(app, ["posterior", str(ROOT / "grammars" / "mini.cfg"), str(f)])
    assert result.exit_code != 0
    message = str(result.exception) + result.output
    assert f"{f}:2:5" in message and "zz" in message


def test_posterior_never_imports_torch_or_ray() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from typer.testing import CliRunner; from cfglab.cli import app; "
        f"r = CliRunner().invoke(app, ['posterior', {str(ROOT / 'grammars' / 'mini.cfg')!r}, "
        "'--json'], input='2 1 3\\n'); assert r.exit_code == 0, r.output; "
        "print('torch' in sys.modules, 'ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
