"""What `cfglab check` reports of a grammar: the report's schema (plain JSON through
`.model_dump()`) and the constraints a user can ask for."""

from __future__ import annotations

from pydantic import BaseModel, Field, computed_field


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


def find(code: str, message: str, symbols: list[str] | tuple[str, ...] = ()) -> Finding:
    return Finding(code=code, message=message, symbols=list(symbols))


def names(symbols: list[str]) -> str:
    return ", ".join(symbols)
