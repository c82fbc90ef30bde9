"""The lengths of a grammar's strings, exactly: shortest (from graph.Facts), longest over the
condensation of the useful grammar, the expected length under the rule weights (E = M E + c
solved one strongly connected component at a time; spectral radius ≥ 1 means infinite), and the
number of parse trees of a non-recursive grammar's language."""

from __future__ import annotations

import math

import numpy as np

from cfglab.analysis.findings import Finding, LengthReport, find
from cfglab.analysis.graph import (
    CAP,
    LENGTH_BOUND,
    Facts,
    children,
    components,
    string_length_problem,
)
from cfglab.grammar.core import Grammar

MAX_COMPONENT = 3_000  # largest recursive component whose mean matrix is solved (dense)
_EIGEN_MAX = 64  # components up to this size also get their exact spectral radius
MAX_COUNT_DIGITS = 1_000  # parse-tree counts beyond this are reported as log10 only
_CRITICAL = 1.0 - 1e-9  # spectral radius at or above this: expected length infinite


def length_report(g: Grammar, f: Facts) -> tuple[LengthReport, list[Finding], list[Finding]]:
    """The lengths, and the errors and warnings they raise."""
    errors: list[Finding] = []
    warnings: list[Finding] = []
    shortest = f.shortest.get(g.start)
    comps = _useful_components(g, f)
    longest = _longest(g, f, comps) if shortest is not None else None
    if shortest is not None and shortest > LENGTH_BOUND:
        errors.append(find("too-long", f"every string has more than {LENGTH_BOUND:.0e} tokens"))
        shortest = longest = None
    bound_problem = string_length_problem(g, shortest)
    if bound_problem:  # exact but past what sample and the chart take on
        errors.append(find("string-length-bound", bound_problem))
    if longest is not None and longest > LENGTH_BOUND:
        warnings.append(
            find(
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
                find(
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
                find(
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


def _useful_components(g: Grammar, f: Facts) -> list[list[str]]:
    """Components of the reachable, productive nonterminals, children's components first."""
    useful = [nt for nt in f.reachable if nt in f.productive]
    return components({nt: [c for c in children(g, nt) if c in f.productive] for nt in useful})


def _longest(g: Grammar, f: Facts, comps: list[list[str]]) -> int:
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
                    best = max(best, min(total, CAP))
        for nt in comp:
            longest[nt] = best
    return longest[g.start]


def _expected_length(
    g: Grammar,
    f: Facts,
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
                find(
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
    f: Facts,
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
