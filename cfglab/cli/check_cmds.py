"""`cfglab check` (validate grammar files) and `cfglab new-grammar` (random layered grammars).

Exit status: 0 when every file is clean, 1 on an error or a violated constraint (warnings count
only with --strict). Neither command imports torch or ray.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table
from rich.text import Text

from cfglab.analysis.checks import (
    AMBIGUITY_STRINGS,
    CheckConstraints,
    CheckReport,
    Finding,
)
from cfglab.cli.console import err, out
from cfglab.errors import CfglabError, format_validation_error

if TYPE_CHECKING:
    from cfglab.analysis.generate import GeneratorKnobs

_DIGITS = re.compile(r"[0-9]{1,9}")


def register(app: typer.Typer) -> None:
    app.command("check")(check_command)
    app.command("new-grammar")(new_grammar_command)


# Constraint flags shared by both commands.
_MAX_DEPTH = typer.Option(None, "--max-depth", min=1, help="Fail grammars deeper than N levels.")
_MIN_LENGTH = typer.Option(
    None, "--min-length", min=1, help="Fail if the shortest string is shorter than N."
)
_MAX_LENGTH = typer.Option(
    None, "--max-length", min=1, help="Fail if the longest string is longer than N."
)
_LAYERED = typer.Option(False, "--require-layered", help="Fail grammars that are not layered.")
_UNAMBIGUOUS = typer.Option(
    False, "--require-unambiguous", help="Fail if a sampled string has two parse trees."
)
_AMBIGUOUS_FRACTION = typer.Option(
    None,
    "--max-ambiguous-fraction",
    min=0.0,
    max=1.0,
    help="Fail if more of the sampled strings are ambiguous.",
)
_STRICT = typer.Option(False, "--strict", help="Warnings fail the check too.")
_AMBIGUITY_STRINGS = typer.Option(
    AMBIGUITY_STRINGS,
    "--ambiguity-strings",
    min=0,
    help="Sampled strings for the ambiguity analysis (0: skip it).",
)


def check_command(
    files: list[Path] = typer.Argument(..., help="Grammar files (.cfg)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per file, one per line."),
    strict: bool = _STRICT,
    max_depth: int | None = _MAX_DEPTH,
    min_length: int | None = _MIN_LENGTH,
    max_length: int | None = _MAX_LENGTH,
    require_layered: bool = _LAYERED,
    require_unambiguous: bool = _UNAMBIGUOUS,
    max_ambiguous_fraction: float | None = _AMBIGUOUS_FRACTION,
    ambiguity_strings: int = _AMBIGUITY_STRINGS,
    seed: int = typer.Option(0, "--seed", help="Seed of the ambiguity analysis's samples."),
) -> None:
    """Validate grammars: well-formedness, levels and depth, string lengths, ambiguity."""
    from cfglab.analysis.checks import check_grammar
    from cfglab.grammar.dsl import load_grammar

    constraints = CheckConstraints(
        max_depth=max_depth,
        min_length=min_length,
        max_length=max_length,
        require_layered=require_layered,
        require_unambiguous=require_unambiguous,
        max_ambiguous_fraction=max_ambiguous_fraction,
        strict=strict,
    )
    all_ok = True
    for path in files:
        try:
            grammar = load_grammar(path)
        except CfglabError as error:  # reported, and the other files are still checked
            report = CheckReport.failed_to_load(str(path), str(error))
        else:
            report = check_grammar(
                grammar, constraints, ambiguity_strings=ambiguity_strings, seed=seed
            )
        all_ok &= report.ok
        if as_json:
            print(report_json(report), flush=True)
        else:
            render_report(report)
    if not all_ok:
        # SystemExit rather than typer.Exit: the status holds when click runs non-standalone too
        # (`app(args, standalone_mode=False)`), where typer.Exit's code is only returned.
        raise SystemExit(1)


def report_json(report: CheckReport) -> str:
    """The one-line JSON form of a report (`--json`)."""
    return json.dumps(report.model_dump(mode="json"))


# --- rendering -----------------------------------------------------------------------------
def render_report(report: CheckReport) -> None:
    """A rich table of the facts, then errors (red), warnings (yellow), violations (red)."""
    title = report.file or report.grammar or "grammar"
    if report.grammar:
        title += (
            f" — grammar {report.grammar}: {report.n_terminals} terminals, "
            f"{report.n_nonterminals} nonterminals, {report.n_rules} rules"
        )
    out.print(f"[bold]{title}[/bold]", markup=True, highlight=False)
    if report.depth is not None:
        out.print(_facts_table(report))
    for finding in report.errors:
        _print_finding("red", "error", finding)
    for finding in report.warnings:
        _print_finding("yellow", "warning", finding)
    for finding in report.violations:
        _print_finding("red", "constraint", finding)
    verdict = "[green]OK[/green]" if report.ok else "[red bold]FAILED[/red bold]"
    out.print(f"{verdict}\n")


def _print_finding(colour: str, kind: str, finding: Finding) -> None:
    if finding.code == "load":  # a located DSL error renders itself (file:line:col, caret, hint)
        out.print(Text(finding.message, style=colour))
        return
    out.print(
        Text.assemble(
            (kind, colour),
            " ",
            (finding.code, "dim"),
            ": ",
            (_without_code(finding), colour if kind != "warning" else ""),
        )
    )


def _without_code(finding: Finding) -> str:
    """The message without a leading "CODE: " of its own: the code is printed before it
    already (`recursive: recursive: Expr -> Expr` read as a stutter)."""
    for prefix in (f"{finding.code}: ", f"{finding.code.replace('-', ' ')}: "):
        if finding.message.startswith(prefix):
            return finding.message[len(prefix) :]
    return finding.message


def _facts_table(report: CheckReport) -> Table:
    depth, lengths = report.depth, report.lengths
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    if depth is not None:
        widths = " · ".join(map(str, depth.widths)) if depth.widths else "—"
        table.add_row("nonterminals per level", widths)
        table.add_row("depth", str(depth.depth) if depth.depth is not None else "unbounded")
        table.add_row("layered", "yes" if depth.layered else "no")
        table.add_row("recursive", " -> ".join(depth.cycle or []) if depth.recursive else "no")
    if lengths is not None:
        table.add_row("shortest string", _opt(lengths.shortest, "none (empty language)"))
        longest = "unbounded" if lengths.unbounded else _opt(lengths.longest, "—")
        table.add_row("longest string", longest)
        expected = (
            "infinite"
            if lengths.expected_infinite
            else (f"{lengths.expected:.2f}" if lengths.expected is not None else "—")
        )
        table.add_row("expected length", expected)
        if lengths.spectral_radius is not None:
            table.add_row("mean-matrix radius", f"{lengths.spectral_radius:.4g}")
        trees = _trees(
            lengths.parse_trees, lengths.parse_trees_log10, depth is not None and depth.recursive
        )
        table.add_row("parse trees (language)", trees)
    table.add_row("ambiguity", _ambiguity_text(report.ambiguity))
    if report.entropy is not None:
        recursive = report.depth is not None and report.depth.recursive
        table.add_row("entropy", _entropy_text(report.entropy, recursive))
        if "lexicon" in report.entropy:
            table.add_row("lexicon", _lexicon_text(report.entropy["lexicon"]))
    return table


def _lexicon_text(lex: dict) -> str:
    """The implicit grammar's lexicon: its share of H(trees) beside the hidden terminals' CFG."""
    share = lex.get("h_trees_lexicon")
    if share is None:
        return f"{lex['bags']} bags (entropy share not computed)"
    return (
        f"{lex['bags']} bags; {share:.4g} nats/string of H(trees) come from the bags "
        f"(the hidden-terminal CFG has {lex['h_trees_hidden']:.4g})"
    )


def _entropy_text(ent: dict, recursive: bool = False) -> str:
    """H(strings) in nats per string and per token (exact, or with its 95% interval)."""
    h, trees = ent.get("h_strings"), ent.get("h_trees")
    if trees is None:
        return ent.get("note", "not computed")
    if h is None:
        # a recursive grammar's E[H(tree | string)] is never sampled (the bounded chart would
        # bias it), whatever the note of the pass that skipped it says
        why = (ent.get("h_tree_given_string") or {}).get("note") or "not estimated"
        why = "recursive grammar: not estimated" if recursive else why
        return f"H(trees) = {trees:.4g} nats (an upper bound on H(strings); {why})"
    if ent["exact"]:
        per_token = _nats(ent["per_token"])
        return f"{_nats(h)} nats/string, {per_token} nats/token (exact if unambiguous)"
    lo, hi = ent["h_strings_ci95"]
    return (
        f"{_nats(h)} nats/string [{_nats(lo)}, {_nats(hi)}], {_nats(ent['per_token'])} nats/token "
        f"(H(trees) {trees:.4g} − E[H(tree | string)], Monte Carlo)"
    )


def _tokens(tokens: list, shown: int = 12) -> str:
    """A string's first `shown` tokens; a longer one says how long it is."""
    words = " ".join(map(str, tokens[:shown]))
    return words if len(tokens) <= shown else f"{words} … ({len(tokens)} tokens)"


def _nats(x: float) -> str:
    """An entropy to 4 digits; float residue of a zero (1e-13 from a difference) reads 0."""
    return "0" if abs(x) < 1e-9 else f"{x:.4g}"


def _opt(value: int | None, missing: str) -> str:
    return missing if value is None else str(value)


def _trees(count: int | None, log10: float | None, recursive: bool) -> str:
    if recursive:
        return "infinite (recursive)"
    if count is not None and count < 10**12:
        return str(count)
    if log10 is None:
        return "more than 10^(10^308)"
    return f"≈ 10^{log10:.2f}"


def _ambiguity_text(amb: dict | None) -> str:
    """The ambiguity analysis in words: what was sampled, how many strings parse two ways, the
    shortest such string; a figure the analysis left out (None) is not printed."""
    if amb is None:
        return "not analysed"
    n = amb.get("n_strings", 0)
    parts = [f"{n} sampled strings"]
    if amb.get("fraction_ambiguous") is not None:
        parts.append(f"{amb['fraction_ambiguous']:.1%} ambiguous")
    if amb.get("max_parses") == 1:
        parts.append("each with one parse tree")
    elif amb.get("max_parses") is not None:
        mean = amb.get("mean_parses")
        tail = "" if mean is None else f", mean {mean:.4g}"
        parts.append(f"at most {amb['max_parses']} parse trees{tail}")
    if amb.get("flip_sensitivity") is not None:
        parts.append(f"{amb['flip_sensitivity']:.1%} of 1-token flips stay valid")
    witness = amb.get("witness")
    if witness:
        parts.append(f"shortest ambiguous: {_tokens(witness['tokens'])}")
    text = "; ".join(parts)
    return f"{text} ({amb['note']})" if amb.get("note") else text


# --- new-grammar ---------------------------------------------------------------------------
def new_grammar_command(
    name: str = typer.Argument(..., help="Grammar name; the file is OUT_DIR/NAME.cfg."),
    levels: int | None = typer.Option(
        None,
        "--levels",
        min=1,
        help="Nonterminal levels below the start symbol (default 4, or "
        "the length of a --width list); depth = levels + 1.",
    ),
    width: str = typer.Option("3", "--width", help="Nonterminals per level: N, or N,N,..."),
    rules: str = typer.Option("2-3", "--rules", help="Rules per nonterminal: N or LOW-HIGH."),
    rule_length: str = typer.Option(
        "2-3", "--rule-length", help="Right-side length: N or LOW-HIGH."
    ),
    terminals: int = typer.Option(3, "--terminals", min=1, help="Number of terminals."),
    distinct_rules: bool = typer.Option(
        True, "--distinct-rules/--no-distinct-rules", help="No nonterminal has two equal rules."
    ),
    no_repeat_symbol: bool = typer.Option(
        False, "--no-repeat-symbol", help="No symbol twice in one rule."
    ),
    seed: int = typer.Option(0, "--seed", help="First seed tried."),
    max_tries: int = typer.Option(100, "--max-tries", min=1, help="Seeds tried at most."),
    out_dir: Path = typer.Option(Path("grammars"), "--out-dir", help="Where NAME.cfg goes."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
    strict: bool = _STRICT,
    max_depth: int | None = _MAX_DEPTH,
    min_length: int | None = _MIN_LENGTH,
    max_length: int | None = _MAX_LENGTH,
    require_layered: bool = _LAYERED,
    require_unambiguous: bool = _UNAMBIGUOUS,
    max_ambiguous_fraction: float | None = _AMBIGUOUS_FRACTION,
    ambiguity_strings: int = _AMBIGUITY_STRINGS,
    as_json: bool = typer.Option(
        False, "--json", help="Print the file, the seed used and the check report as JSON."
    ),
) -> None:
    """Make a random layered grammar that passes the checks; write OUT_DIR/NAME.cfg."""
    from cfglab.analysis.checks import check_grammar
    from cfglab.analysis.generate import new_grammar
    from cfglab.grammar.dsl import NAME_RE, save_grammar

    if not NAME_RE.fullmatch(name):
        raise CfglabError(
            f"NAME {name!r} is not an identifier (letters, digits and _, not starting with a digit)"
        )
    knobs = make_knobs(
        levels, width, rules, rule_length, terminals, distinct_rules, no_repeat_symbol
    )
    path = out_dir / f"{name}.cfg"
    if path.exists() and not force:
        raise CfglabError(f"{path} already exists; pass --force to overwrite it")
    constraints = CheckConstraints(
        max_depth=max_depth,
        min_length=min_length,
        max_length=max_length,
        require_layered=require_layered,
        require_unambiguous=require_unambiguous,
        max_ambiguous_fraction=max_ambiguous_fraction,
        strict=strict,
    )
    grammar, report, used = new_grammar(name, knobs, constraints, seed, max_tries)
    if report.ambiguity is None and ambiguity_strings > 0:  # once, for the printed report
        report = check_grammar(grammar, constraints, ambiguity_strings=ambiguity_strings, seed=used)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_grammar(grammar, path)
    report.file = str(path)
    tries = used - seed + 1
    if as_json:
        record = {"file": str(path), "seed": used, "tries": tries}
        print(json.dumps(record | {"report": report.model_dump(mode="json")}), flush=True)
        return
    err.print(f"wrote {path} (seed {used}, {tries} {'try' if tries == 1 else 'tries'})")
    render_report(report)


def make_knobs(
    levels: int | None,
    width: str,
    rules: str,
    rule_length: str,
    terminals: int,
    distinct_rules: bool,
    no_repeat_symbol: bool,
) -> GeneratorKnobs:
    """Generator knobs from the flags' text; a bad value is a CfglabError naming its flag."""
    from pydantic import ValidationError

    from cfglab.analysis.generate import GeneratorKnobs

    widths = parse_int_list(width, "--width")
    if levels is None:
        levels = len(widths) if len(widths) > 1 else 4
    if len(widths) > 1 and len(widths) != levels:
        raise CfglabError(f"--width lists {len(widths)} levels but --levels is {levels}")
    try:
        return GeneratorKnobs(
            levels=levels,
            width=widths if len(widths) > 1 else widths[0],
            rules=parse_range(rules, "--rules"),
            rule_length=parse_range(rule_length, "--rule-length"),
            terminals=terminals,
            distinct_rules=distinct_rules,
            no_repeat_symbol=no_repeat_symbol,
        )
    except ValidationError as error:
        raise CfglabError(format_validation_error(error, "new-grammar: invalid settings")) from None


def parse_range(text: str, flag: str) -> tuple[int, int]:
    """'2-3' → (2, 3), '3' → (3, 3); anything else is a CfglabError naming the flag."""
    parts = [p.strip() for p in text.strip().split("-")]
    if len(parts) > 2 or not all(_DIGITS.fullmatch(p) for p in parts):
        raise CfglabError(f"{flag} {text!r}: expected N or LOW-HIGH (e.g. 2-3)")
    lo, hi = int(parts[0]), int(parts[-1])
    if lo < 1 or lo > hi:
        raise CfglabError(f"{flag} {text!r}: expected 1 <= LOW <= HIGH")
    return lo, hi


def parse_int_list(text: str, flag: str) -> list[int]:
    """'3' → [3], '3,3,4,4' → [3, 3, 4, 4] (positive integers)."""
    parts = [p.strip() for p in text.split(",")]
    if not all(_DIGITS.fullmatch(p) and int(p) >= 1 for p in parts):
        raise CfglabError(
            f"{flag} {text!r}: expected a positive integer or a comma-separated "
            "list of them (e.g. 3 or 3,3,4,4)"
        )
    return [int(p) for p in parts]
