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

Ambiguity needs the chart: `cfglab.analysis.ambiguity.ambiguity_report(grammar, n_strings, seed)`
fills `CheckReport.ambiguity` (imported only when asked for, so `check` without it starts fast).
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, deque

import numpy as np
from pydantic import BaseModel, Field, computed_field

from cfglab.grammar.core import MAX_RULES, Grammar

MAX_RHS_SYMBOLS = 2_000_000
MAX_COMPONENT = 3_000  # largest recursive component whose mean matrix is solved (dense)
_EIGEN_MAX = 64  # components up to this size also get their exact spectral radius
MAX_COUNT_DIGITS = 1_000  # parse-tree counts beyond this are reported as log10 only
AMBIGUITY_STRINGS = 200  # sampled strings the ambiguity analysis parses by default
_CRITICAL = 1.0 - 1e-9  # spectral radius at or above this: expected length infinite
LENGTH_BOUND = 10**15  # longer strings are unsampleable: lengths beyond are not reported exactly
_CAP = LENGTH_BOUND + 1  # lengths saturate here, so absurd grammars never build huge integers


# --- the report ----------------------------------------------------------------------------
class CheckConstraints(BaseModel):
    """What the user requires of a grammar beyond being well formed (all optional)."""

    max_depth: int | None = Field(None, ge=1)  # depth (levels down to the terminals) at most this
    min_length: int | None = Field(None, ge=1)  # the shortest string at least this long
    max_length: int | None = Field(None, ge=1)  # the longest string at most this long
    require_layered: bool = False  # every rule's right side on the next level
    require_unambiguous: bool = False  # no sampled string with two parse trees
    max_ambiguous_fraction: float | None = Field(None, ge=0.0, le=1.0)
    strict: bool = False  # warnings fail the check too


class Finding(BaseModel):
    """One error, warning or violated constraint."""

    code: str  # stable machine-readable name, e.g. "unreachable", "max-depth"
    message: str
    symbols: list[str] = []  # the nonterminals or terminals concerned, if any


class DepthReport(BaseModel):
    """Levels (longest path from the start symbol) and recursion."""

    levels: dict[str, int] | None  # per reachable nonterminal; None when recursive
    widths: list[int] | None  # nonterminals on each level, level 0 = the start symbol
    depth: int | None  # levels from the start down to the terminals; None when recursive
    layered: bool  # every rule's right side sits on the next level
    recursive: bool  # a cycle of nonterminals is reachable from the start
    cycle: list[str] | None  # one such cycle, first symbol repeated at the end: A, B, A


class LengthReport(BaseModel):
    """Lengths of the strings of the language (tokens, no EOS)."""

    shortest: int | None  # None: the language is empty
    longest: int | None  # None: unbounded (or empty)
    unbounded: bool  # the language is infinite
    expected: float | None  # under the rule weights; None when infinite or not computed
    expected_infinite: bool
    spectral_radius: float | None  # of the mean matrix, recursive grammars only
    # Number of parse trees of the whole language (finite grammars): the number of distinct
    # strings only when the grammar is unambiguous, an upper bound on it otherwise.
    parse_trees: int | None
    parse_trees_log10: float | None


class CheckReport(BaseModel):
    file: str | None = None
    grammar: str | None = None
    n_terminals: int = 0
    n_nonterminals: int = 0
    n_rules: int = 0
    depth: DepthReport | None = None
    lengths: LengthReport | None = None
    ambiguity: dict | None = None  # filled by cfglab.analysis.ambiguity
    entropy: dict | None = None  # cfglab.analysis.entropy: H(trees) exact, H(strings) with CI
    errors: list[Finding] = []
    warnings: list[Finding] = []
    violations: list[Finding] = []
    strict: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        """No errors, no violated constraints, and no warnings when strict."""
        return not (self.errors or self.violations or (self.strict and self.warnings))

    @classmethod
    def failed_to_load(cls, file: str, message: str) -> CheckReport:
        """The report of a file that did not parse: one error, nothing else known."""
        return cls(file=file, errors=[Finding(code="load", message=message)])


# --- entry point ---------------------------------------------------------------------------
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
    facts = _Facts(grammar)
    report.errors += _form_errors(grammar, facts)
    report.warnings += _form_warnings(grammar, facts)
    report.depth = _depth_report(grammar, facts)
    if report.depth.recursive:
        report.warnings.append(_recursion_warning(report.depth.cycle or []))
    report.lengths, length_errors, length_warnings = _length_report(grammar, facts)
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
        return _find(
            "too-large",
            f"grammar has {len(g.rules)} rules ({n_symbols} right-side "
            f"symbols); check analyses at most {MAX_RULES} rules and {MAX_RHS_SYMBOLS} "
            "symbols",
        )
    return None


# --- shared facts --------------------------------------------------------------------------
class _Facts:
    """Reachability, productivity and shortest lengths, computed once."""

    def __init__(self, g: Grammar) -> None:
        self.defined = set(g.nonterminals)
        self.used = {s for r in g.rules for s in r.rhs}
        self.undefined = sorted(
            s for s in self.used if not g.is_terminal(s) and s not in self.defined
        )
        self.reachable = _reachable(g)
        self.shortest = _shortest(g)  # productive nonterminals only
        self.productive = set(self.shortest)
        total: dict[str, float] = {}
        for r in g.rules:
            total[r.lhs] = total.get(r.lhs, 0.0) + r.weight
        # (probability, right side) per nonterminal, once: Grammar.rule_probability re-sums.
        self.weighted: dict[str, list[tuple[float, tuple[str, ...]]]] = {}
        for r in g.rules:
            p = r.weight / total[r.lhs] if total[r.lhs] > 0 else math.nan
            self.weighted.setdefault(r.lhs, []).append((p, r.rhs))
        # Weighted analyses need proper rules: non-empty, positive finite weights, NT left sides.
        self.sound = all(
            r.rhs and math.isfinite(r.weight) and r.weight > 0 and not g.is_terminal(r.lhs)
            for r in g.rules
        )


def _reachable(g: Grammar) -> list[str]:
    """Nonterminals reachable from the start (undefined ones included), in BFS order."""
    order = [g.start]
    seen = {g.start}
    for nt in order:  # `order` grows while we walk it: a BFS queue that is also the answer
        for r in g.rules_of(nt):
            for s in r.rhs:
                if not g.is_terminal(s) and s not in seen:
                    seen.add(s)
                    order.append(s)
    return order


def _shortest(g: Grammar) -> dict[str, int]:
    """Shortest string of every productive nonterminal (Knuth 1977: Dijkstra for grammars).

    A rule's candidate length becomes known once all of its nonterminals are settled; the
    smallest candidate in the heap is final because lengths only grow when summed.
    """
    waiting: list[int] = []  # per rule: right-side nonterminals not yet settled
    partial: list[int] = []  # per rule: length so far
    uses: dict[str, list[int]] = {}  # nonterminal -> rules it occurs in (with multiplicity)
    heap: list[tuple[int, str]] = []
    for i, r in enumerate(g.rules):
        nts = [s for s in r.rhs if not g.is_terminal(s)]
        waiting.append(len(nts))
        partial.append(len(r.rhs) - len(nts))
        for s in nts:
            uses.setdefault(s, []).append(i)
        if not nts and r.rhs:
            heap.append((partial[i], r.lhs))
    heapq.heapify(heap)
    done: dict[str, int] = {}
    while heap:
        length, nt = heapq.heappop(heap)
        if nt in done:
            continue
        done[nt] = length
        for i in uses.get(nt, ()):
            partial[i] = min(partial[i] + length, _CAP)
            waiting[i] -= 1
            if waiting[i] == 0:
                heapq.heappush(heap, (partial[i], g.rules[i].lhs))
    return done


# --- well-formedness -----------------------------------------------------------------------
def _find(code: str, message: str, symbols: list[str] | tuple[str, ...] = ()) -> Finding:
    return Finding(code=code, message=message, symbols=list(symbols))


def _form_errors(g: Grammar, f: _Facts) -> list[Finding]:
    errors: list[Finding] = []
    if g.start not in f.defined:
        errors.append(_find("undefined-start", f"start symbol {g.start} has no rules", [g.start]))
    undefined = [s for s in f.undefined if s != g.start]
    if undefined:
        errors.append(
            _find("undefined", f"used but never defined (no rules): {_names(undefined)}", undefined)
        )
    as_lhs = [nt for nt in g.nonterminals if g.is_terminal(nt)]
    if as_lhs:
        errors.append(
            _find("terminal-lhs", f"declared terminals with rules: {_names(as_lhs)}", as_lhs)
        )
    empty = sorted({r.lhs for r in g.rules if not r.rhs})
    if empty:
        errors.append(
            _find(
                "empty-rule",
                f"ε-rules (empty right side) are not supported: {_names(empty)}",
                empty,
            )
        )
    bad = sorted({r.lhs for r in g.rules if not (math.isfinite(r.weight) and r.weight > 0)})
    if bad:
        errors.append(
            _find("weight", f"rule weights must be finite and > 0: rules of {_names(bad)}", bad)
        )
    unproductive = [nt for nt in g.nonterminals if nt not in f.productive and nt not in as_lhs]
    if unproductive:
        errors.append(
            _find(
                "unproductive",
                "derive no terminal string (every rule leads to an "
                f"endless or undefined derivation): {_names(unproductive)}",
                unproductive,
            )
        )
    return errors


def _form_warnings(g: Grammar, f: _Facts) -> list[Finding]:
    warnings: list[Finding] = []
    reachable = set(f.reachable)
    unreachable = [nt for nt in g.nonterminals if nt not in reachable]
    if unreachable:
        warnings.append(
            _find(
                "unreachable",
                f"not reachable from the start symbol {g.start}: {_names(unreachable)}",
                unreachable,
            )
        )
    produced = {s for nt in reachable for r in g.rules_of(nt) for s in r.rhs}
    unused = [t for t in g.terminals if t not in produced]
    if unused:
        warnings.append(
            _find(
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
            _find(
                "duplicate-rule",
                f"duplicate rules (each copy adds a parse tree and weight): {shown}",
                sorted({lhs for (lhs, _), _ in dup}),
            )
        )
    return warnings


def _names(symbols: list[str]) -> str:
    return ", ".join(symbols)


def _recursion_warning(cycle: list[str]) -> Finding:
    return _find(
        "recursive",
        f"recursive: {' -> '.join(cycle)} (no levels; sampling needs a bound)",
        cycle[:-1],
    )


# --- depth ---------------------------------------------------------------------------------
def _depth_report(g: Grammar, f: _Facts) -> DepthReport:
    levels = g.levels  # core: longest path from the start, None on a reachable cycle
    cycle = None if levels is not None else _find_cycle(g, f.reachable)
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


def _children(g: Grammar, nt: str) -> list[str]:
    return list(dict.fromkeys(s for r in g.rules_of(nt) for s in r.rhs if not g.is_terminal(s)))


def _find_cycle(g: Grammar, reachable: list[str]) -> list[str] | None:
    """The shortest cycle through the first recursive nonterminal (grammar order)."""
    graph = {nt: _children(g, nt) for nt in reachable}
    comps = _components(graph)
    where = {nt: i for i, comp in enumerate(comps) for nt in comp}
    order = {nt: i for i, nt in enumerate(g.nonterminals)}
    looping = [nt for nt in reachable if _on_cycle(nt, graph, comps[where[nt]])]
    if not looping:
        return None
    head = min(looping, key=lambda nt: order.get(nt, len(order)))
    members = set(comps[where[head]])
    parent: dict[str, str] = {}
    queue = deque([head])
    while queue:  # BFS inside the component until an edge returns to head
        nt = queue.popleft()
        for child in graph[nt]:
            if child == head:
                path = [nt]
                while path[-1] != head:
                    path.append(parent[path[-1]])
                return path[::-1] + [head]
            if child in members and child not in parent:
                parent[child] = nt
                queue.append(child)
    return None


def _on_cycle(nt: str, graph: dict[str, list[str]], comp: list[str]) -> bool:
    return len(comp) > 1 or nt in graph[nt]


def _components(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components (iterative Tarjan), children's components first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    comps: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            nt, i = work.pop()
            if i == 0:
                index[nt] = low[nt] = len(index)
                stack.append(nt)
                on_stack.add(nt)
            kids = graph.get(nt, [])
            if i < len(kids):
                work.append((nt, i + 1))
                kid = kids[i]
                if kid not in index:
                    work.append((kid, 0))
                elif kid in on_stack:
                    low[nt] = min(low[nt], index[kid])
                continue
            if low[nt] == index[nt]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == nt:
                        break
                comps.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[nt])
    return comps


# --- lengths -------------------------------------------------------------------------------
def _length_report(g: Grammar, f: _Facts) -> tuple[LengthReport, list[Finding], list[Finding]]:
    """The lengths, and the errors and warnings they raise."""
    errors: list[Finding] = []
    warnings: list[Finding] = []
    shortest = f.shortest.get(g.start)
    comps = _useful_components(g, f)
    longest = _longest(g, f, comps) if shortest is not None else None
    if shortest is not None and shortest > LENGTH_BOUND:
        errors.append(_find("too-long", f"every string has more than {LENGTH_BOUND:.0e} tokens"))
        shortest = longest = None
    if longest is not None and longest > LENGTH_BOUND:
        warnings.append(
            _find(
                "too-long",
                f"the longest string has more than {LENGTH_BOUND:.0e} "
                "tokens (not reported exactly)",
            )
        )
        longest = None
    expected, radius, infinite = None, None, False
    if shortest is not None and f.sound and all(nt in f.productive for nt in f.reachable):
        expected, radius, infinite, err = _expected_length(g, f, comps)
        errors += [err] if err else []
        if infinite:
            expected = None
            shown = f" {radius:.4g}" if radius is not None and radius >= _CRITICAL else ""
            errors.append(
                _find(
                    "infinite-expected-length",
                    "expected string length is "
                    "infinite under the rule weights (the mean matrix has spectral "
                    f"radius{shown} >= 1): the recursion grows as fast as it ends or "
                    "faster; lower the recursive rules' weights",
                )
            )
        elif expected is not None and not expected <= LENGTH_BOUND:  # also catches overflow
            expected = None
            errors.append(
                _find(
                    "too-long",
                    "expected string length exceeds "
                    f"{LENGTH_BOUND:.0e} tokens (or is infinite within rounding)",
                )
            )
    trees, log10 = _parse_trees(g) if g.levels is not None else (None, None)
    report = LengthReport(
        shortest=shortest,
        longest=longest if longest is not None and longest >= 0 else None,
        unbounded=longest == -1,
        expected=expected,
        expected_infinite=infinite,
        spectral_radius=radius,
        parse_trees=trees,
        parse_trees_log10=log10,
    )
    return report, errors, warnings


def _useful_components(g: Grammar, f: _Facts) -> list[list[str]]:
    """Components of the reachable, productive nonterminals, children's components first."""
    useful = [nt for nt in f.reachable if nt in f.productive]
    return _components({nt: [c for c in _children(g, nt) if c in f.productive] for nt in useful})


def _longest(g: Grammar, f: _Facts, comps: list[list[str]]) -> int:
    """Longest string of the start symbol; -1 when the language is infinite.

    Over the useful grammar (reachable, productive), the language is infinite exactly when a
    component holds a rule of length ≥ 2 that calls back into the component. Otherwise the only
    rules inside a component are unit rules A -> B, every member derives every other member's
    strings, and a component's longest string is the longest over its members' other rules.
    """
    longest: dict[str, int] = {}
    for comp in comps:  # children's components first
        members = set(comp)
        best = 0
        for nt in comp:
            for r in g.rules_of(nt):
                if any(not g.is_terminal(s) and s not in f.productive for s in r.rhs):
                    continue
                inside = [s for s in r.rhs if s in members]
                if inside and len(r.rhs) >= 2:
                    return -1
                if not inside:
                    total = sum(1 if g.is_terminal(s) else longest[s] for s in r.rhs)
                    best = max(best, min(total, _CAP))
        for nt in comp:
            longest[nt] = best
    return longest[g.start]


def _expected_length(
    g: Grammar,
    f: _Facts,
    comps: list[list[str]],
) -> tuple[float | None, float | None, bool, Finding | None]:
    """E[len] of the start under rule weights, the largest spectral radius seen, whether it is
    infinite, or an error.

    E[A] = Σ_r p_r Σ_{s in rhs r} E[s] with E[terminal] = 1, solved per component (children
    first): inside a component (I - M) E = b, finite iff M's spectral radius is below 1. Every
    component is reachable, so one infinite component makes the start's expectation infinite.
    """
    expected: dict[str, float] = {}
    radius: float | None = None
    for comp in comps:
        k = len(comp)
        if k > MAX_COMPONENT:
            return (
                None,
                radius,
                False,
                _find(
                    "too-large",
                    f"a recursive component of {k} nonterminals is too large to analyse "
                    f"(at most {MAX_COMPONENT}); expected length not computed",
                ),
            )
        mean, b = _component_system(g, f, comp, expected)
        if k == 1 and mean[0, 0] == 0.0:  # not recursive: a plain weighted sum
            expected[comp[0]] = float(b[0])
            continue
        values, rho = _solve_component(mean, b)
        if rho is not None:
            radius = rho if radius is None else max(radius, rho)
        if values is None:
            return None, radius, True, None
        expected.update(zip(comp, values.tolist()))
    return expected[g.start], radius, False, None


def _component_system(
    g: Grammar,
    f: _Facts,
    comp: list[str],
    expected: dict[str, float],
) -> tuple[np.ndarray, np.ndarray]:
    """The mean matrix M inside a component, and b: the expected length contributed from outside."""
    pos = {nt: i for i, nt in enumerate(comp)}
    mean = np.zeros((len(comp), len(comp)))
    b = np.zeros(len(comp))
    for nt, i in pos.items():
        for p, rhs in f.weighted.get(nt, ()):
            for s in rhs:
                if s in pos:
                    mean[i, pos[s]] += p
                else:
                    b[i] += p * (1.0 if g.is_terminal(s) else expected[s])
    return mean, b


def _solve_component(mean: np.ndarray, b: np.ndarray) -> tuple[np.ndarray | None, float | None]:
    """(E = (I - M)^-1 b, or None when M's spectral radius is ≥ 1; the radius when computed).

    Small components get their spectral radius from eigenvalues. Large ones (eigenvalues of
    permutation-like matrices converge slowly) use M-matrix theory instead: a component is
    strongly connected and productive, so M is irreducible and b ≥ 0 is nonzero, and then
    (I - M) x = b has a positive solution iff the radius is below 1.
    """
    k = len(b)
    rho = float(np.max(np.abs(np.linalg.eigvals(mean)))) if k <= _EIGEN_MAX else None
    if rho is not None and rho >= _CRITICAL:
        return None, rho
    try:
        x = np.linalg.solve(np.eye(k) - mean, b)
    except np.linalg.LinAlgError:  # singular: radius exactly 1
        return None, rho
    if not np.all(x > 0):  # NaN from an overflowed b lands here too, as "beyond the bound"
        return (None if np.all(np.isfinite(b)) else np.full(k, math.inf)), rho
    return x, rho


def _parse_trees(g: Grammar) -> tuple[int | None, float | None]:
    """Parse trees of a non-recursive grammar's language: (exact count or None, log10 of it).

    The log is computed first so that a count of astronomically many digits is never built.
    """
    levels = g.levels or {}
    order = sorted(levels, key=lambda nt: -levels[nt])  # deepest level first
    log_count: dict[str, float] = {}
    for nt in order:
        log_count[nt] = _logsumexp(
            [sum(0.0 if g.is_terminal(s) else log_count[s] for s in r.rhs) for r in g.rules_of(nt)]
        )
    if log_count[g.start] == -math.inf:  # empty language
        return 0, None
    log10 = log_count[g.start] / math.log(10)
    if not math.isfinite(log10):  # beyond 10^(10^308): even the log overflowed
        return None, None
    if log10 > MAX_COUNT_DIGITS:
        return None, log10
    count: dict[str, int] = {}
    for nt in order:
        count[nt] = sum(
            math.prod(1 if g.is_terminal(s) else count[s] for s in r.rhs) for r in g.rules_of(nt)
        )
    return count[g.start], log10


def _logsumexp(xs: list[float]) -> float:
    finite = [x for x in xs if x != -math.inf]
    if not finite:
        return -math.inf
    top = max(finite)
    return top + math.log(sum(math.exp(x - top) for x in finite))


# --- ambiguity -----------------------------------------------------------------------------
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
    return entropy_report(g, conditional=cond)


# --- constraints ---------------------------------------------------------------------------
def _violations(report: CheckReport, c: CheckConstraints) -> list[Finding]:
    out: list[Finding] = []
    depth, lengths = report.depth, report.lengths
    if c.max_depth is not None and depth is not None:
        if depth.depth is None:
            out.append(
                _find("max-depth", f"depth is unbounded (recursive) > --max-depth {c.max_depth}")
            )
        elif depth.depth > c.max_depth:
            out.append(_find("max-depth", f"depth {depth.depth} > --max-depth {c.max_depth}"))
    if c.require_layered and depth is not None and not depth.layered:
        out.append(_find("layered", "not layered: some rule's right side is not on the next level"))
    if lengths is not None and lengths.shortest is not None:
        if c.min_length is not None and lengths.shortest < c.min_length:
            out.append(
                _find(
                    "min-length",
                    f"shortest string has {lengths.shortest} tokens < --min-length {c.min_length}",
                )
            )
        too_long = lengths.unbounded or (lengths.longest or 0) > (c.max_length or 0)
        if c.max_length is not None and too_long:
            longest = "unbounded" if lengths.unbounded else f"{lengths.longest} tokens"
            out.append(
                _find("max-length", f"longest string is {longest} > --max-length {c.max_length}")
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
                _find(
                    code,
                    f"{flag} cannot be evaluated: no ambiguity analysis (it needs "
                    "an error-free grammar and at least one sampled string)",
                )
            )
        elif amb["fraction_ambiguous"] > limit:
            out.append(
                _find(
                    code,
                    f"{amb['fraction_ambiguous']:.3g} of the sampled strings are "
                    f"ambiguous ({flag})",
                )
            )
    return out
