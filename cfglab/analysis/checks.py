"""Validation of a grammar: well-formedness, levels and depth, string lengths, ambiguity.

`check_grammar(grammar, constraints)` returns a `CheckReport` (a pydantic model; `.model_dump()`
is plain JSON). Findings are split three ways:
  errors      the grammar is broken (undefined or unproductive symbols, ε-rules, a recursion
              whose expected string length is infinite, ...): it cannot be sampled as written
  warnings    legal but suspicious (unreachable nonterminals, unused terminals, duplicate rules,
              recursion); they fail a check only under `strict`
  violations  the grammar is fine but breaks a constraint the user asked for (`--max-depth`, ...)

Lengths are exact: shortest by Knuth's generalisation of Dijkstra to grammars, longest over the
condensation of the useful grammar, expected length under the rule weights by solving
E = M E + c one strongly connected component at a time (M: the mean matrix, how many copies of
each nonterminal a rule produces on average). A component whose mean matrix has spectral radius
≥ 1 makes the expected length infinite.

The report's schema is findings.py, the graph facts graph.py, the lengths lengths.py.
Ambiguity needs the chart: `cfglab.analysis.ambiguity.ambiguity_report(grammar, n_strings, seed)`
fills `CheckReport.ambiguity` (imported only when asked for, so `check` without it starts fast).
"""

from __future__ import annotations

import math
from collections import Counter

from cfglab.analysis.findings import (
    CheckConstraints,
    CheckReport,
    DepthReport,
    Finding,
    LengthReport,
    find,
    names,
)
from cfglab.analysis.graph import Facts, find_cycle
from cfglab.analysis.lengths import length_report
from cfglab.grammar.core import MAX_RULES, Grammar

__all__ = [
    "AMBIGUITY_STRINGS",
    "MAX_RULES",
    "CheckConstraints",
    "CheckReport",
    "DepthReport",
    "Finding",
    "LengthReport",
    "check_grammar",
]

MAX_RHS_SYMBOLS = 2_000_000
AMBIGUITY_STRINGS = 200  # sampled strings the ambiguity analysis parses by default


def check_grammar(
    grammar: Grammar,
    constraints: CheckConstraints | None = None,
    *,
    ambiguity_strings: int = AMBIGUITY_STRINGS,
    seed: int = 0,
) -> CheckReport:
    """Everything `cfglab check` reports about one grammar (`ambiguity_strings=0`: no ambiguity)."""
    constraints = constraints or CheckConstraints()
    report = CheckReport(
        file=grammar.source,
        grammar=grammar.name,
        n_terminals=len(grammar.terminals),
        n_nonterminals=len(grammar.nonterminals),
        n_rules=len(grammar.rules),
        strict=constraints.strict,
    )
    too_big = _size_error(grammar)
    if too_big:
        report.errors.append(too_big)
        return report
    facts = Facts(grammar)
    report.errors += _form_errors(grammar, facts)
    report.warnings += _form_warnings(grammar, facts)
    report.depth = _depth_report(grammar, facts)
    if report.depth.recursive:
        report.warnings.append(_recursion_warning(report.depth.cycle or []))
    report.lengths, length_errors, length_warnings = length_report(grammar, facts)
    report.errors += length_errors
    report.warnings += length_warnings
    if ambiguity_strings > 0 and not report.errors:
        report.ambiguity = _ambiguity(grammar, ambiguity_strings, seed)
    if not report.errors and not report.lengths.expected_infinite:
        report.entropy = _entropy(grammar, report.ambiguity)
    report.violations += _violations(report, constraints)
    return report


def _size_error(g: Grammar) -> Finding | None:
    n_symbols = sum(len(r.rhs) for r in g.rules)
    if len(g.rules) > MAX_RULES or n_symbols > MAX_RHS_SYMBOLS:
        return find(
            "too-large",
            f"grammar has {len(g.rules)} rules ({n_symbols} right-side "
            f"symbols); check analyses at most {MAX_RULES} rules and {MAX_RHS_SYMBOLS} "
            "symbols",
        )
    return None


def _form_errors(g: Grammar, f: Facts) -> list[Finding]:
    errors: list[Finding] = []
    if g.start not in f.defined:
        errors.append(find("undefined-start", f"start symbol {g.start} has no rules", [g.start]))
    undefined = [s for s in f.undefined if s != g.start]
    if undefined:
        errors.append(
            find("undefined", f"used but never defined (no rules): {names(undefined)}", undefined)
        )
    as_lhs = [nt for nt in g.nonterminals if g.is_terminal(nt)]
    if as_lhs:
        errors.append(
            find("terminal-lhs", f"declared terminals with rules: {names(as_lhs)}", as_lhs)
        )
    empty = sorted({r.lhs for r in g.rules if not r.rhs})
    if empty:
        errors.append(
            find(
                "empty-rule",
                f"ε-rules (empty right side) are not supported: {names(empty)}",
                empty,
            )
        )
    bad = sorted({r.lhs for r in g.rules if not (math.isfinite(r.weight) and r.weight > 0)})
    if bad:
        errors.append(
            find("weight", f"rule weights must be finite and > 0: rules of {names(bad)}", bad)
        )
    unproductive = [nt for nt in g.nonterminals if nt not in f.productive and nt not in as_lhs]
    if unproductive:
        errors.append(
            find(
                "unproductive",
                "derive no terminal string (every rule leads to an "
                f"endless or undefined derivation): {names(unproductive)}",
                unproductive,
            )
        )
    return errors


def _form_warnings(g: Grammar, f: Facts) -> list[Finding]:
    warnings: list[Finding] = []
    reachable = set(f.reachable)
    unreachable = [nt for nt in g.nonterminals if nt not in reachable]
    if unreachable:
        warnings.append(
            find(
                "unreachable",
                f"not reachable from the start symbol {g.start}: {names(unreachable)}",
                unreachable,
            )
        )
    produced = {s for nt in reachable for r in g.rules_of(nt) for s in r.rhs}
    unused = [t for t in g.terminals if t not in produced]
    if unused:
        warnings.append(
            find(
                "unused-terminal",
                "declared terminals no rule reachable from the "
                "start uses: " + ", ".join(f'"{t}"' for t in unused),
                unused,
            )
        )
    dup = [(key, n) for key, n in Counter((r.lhs, r.rhs) for r in g.rules).items() if n > 1]
    if dup:
        shown = "; ".join(f"{lhs} -> {' '.join(rhs)} ({n} times)" for (lhs, rhs), n in dup)
        warnings.append(
            find(
                "duplicate-rule",
                f"duplicate rules (each copy adds a parse tree and weight): {shown}",
                sorted({lhs for (lhs, _), _ in dup}),
            )
        )
    return warnings


def _recursion_warning(cycle: list[str]) -> Finding:
    return find(
        "recursive",
        f"recursive: {' -> '.join(cycle)} (no levels; sampling needs a bound)",
        cycle[:-1],
    )


def _depth_report(g: Grammar, f: Facts) -> DepthReport:
    levels = g.levels  # core: longest path from the start, None on a reachable cycle
    cycle = None if levels is not None else find_cycle(g, f.reachable)
    widths = None
    if levels is not None:
        widths = [0] * (max(levels.values()) + 1)
        for lv in levels.values():
            widths[lv] += 1
    return DepthReport(
        levels=levels,
        widths=widths,
        depth=g.depth,
        layered=g.is_layered,
        recursive=levels is None,
        cycle=cycle,
    )


def _ambiguity(g: Grammar, n_strings: int, seed: int) -> dict:
    from cfglab.analysis.ambiguity import (
        ambiguity_report,  # the chart: numpy-heavy, on demand
    )

    return ambiguity_report(g, n_strings=n_strings, seed=seed)


def _entropy(g: Grammar, ambiguity: dict | None) -> dict:
    """Exact H(trees); H(strings) when the ambiguity pass estimated E[H(tree | string)]."""
    from cfglab.analysis.entropy import entropy_report

    cond = (ambiguity or {}).get("tree_given_string")
    if cond is None:
        cond = {"n_strings": 0, "mean": None, "note": "no ambiguity analysis"}
    report = entropy_report(g, conditional=cond)
    if g.hidden and report.get("h_trees") is not None:
        report["lexicon"] = _lexicon_entropy(g, report["h_trees"])
    return report


def _lexicon_entropy(g: Grammar, h_trees: float) -> dict:
    """The lexicon's share of H(trees): H(trees) less that of the hidden-terminal grammar, i.e.
    Σ_t E[count of t] · H(token | t) (exact); over strings, overlap bags give back some of it."""
    from cfglab.analysis.entropy import tree_entropy
    from cfglab.grammar.lexicon import hidden_grammar

    base = tree_entropy(hidden_grammar(g))
    h_base = None if base is None else base["h_trees"]
    share = None if h_base is None else h_trees - h_base
    return {"h_trees_hidden": h_base, "h_trees_lexicon": share, "bags": len(g.hidden)}


def _violations(report: CheckReport, c: CheckConstraints) -> list[Finding]:
    out: list[Finding] = []
    depth, lengths = report.depth, report.lengths
    if c.max_depth is not None and depth is not None:
        if depth.depth is None:
            out.append(
                find("max-depth", f"depth is unbounded (recursive) > --max-depth {c.max_depth}")
            )
        elif depth.depth > c.max_depth:
            out.append(find("max-depth", f"depth {depth.depth} > --max-depth {c.max_depth}"))
    if c.require_layered and depth is not None and not depth.layered:
        out.append(find("layered", "not layered: some rule's right side is not on the next level"))
    if lengths is not None and lengths.shortest is not None:
        if c.min_length is not None and lengths.shortest < c.min_length:
            out.append(
                find(
                    "min-length",
                    f"shortest string has {lengths.shortest} tokens < --min-length {c.min_length}",
                )
            )
        too_long = lengths.unbounded or (lengths.longest or 0) > (c.max_length or 0)
        if c.max_length is not None and too_long:
            longest = "unbounded" if lengths.unbounded else f"{lengths.longest} tokens"
            out.append(
                find("max-length", f"longest string is {longest} > --max-length {c.max_length}")
            )
    return out + _ambiguity_violations(report.ambiguity, c)


def _ambiguity_violations(amb: dict | None, c: CheckConstraints) -> list[Finding]:
    wanted = []
    if c.require_unambiguous:
        wanted.append(("require-unambiguous", 0.0, "--require-unambiguous"))
    if c.max_ambiguous_fraction is not None:
        wanted.append(
            (
                "max-ambiguous-fraction",
                c.max_ambiguous_fraction,
                f"--max-ambiguous-fraction {c.max_ambiguous_fraction}",
            )
        )
    out: list[Finding] = []
    for code, limit, flag in wanted:
        if amb is None or "fraction_ambiguous" not in amb:
            # A constraint nobody could evaluate must not pass silently.
            out.append(
                find(
                    code,
                    f"{flag} cannot be evaluated: no ambiguity analysis (it needs "
                    "an error-free grammar and at least one sampled string)",
                )
            )
        elif amb["fraction_ambiguous"] > limit:
            out.append(
                find(
                    code,
                    f"{amb['fraction_ambiguous']:.3g} of the sampled strings are "
                    f"ambiguous ({flag})",
                )
            )
    return out
