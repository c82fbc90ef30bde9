"""Random layered grammars with the knobs of Allen-Zhu & Li's generator (cfg3b … cfg3k).

Structure (as in the authors' configs): level 0 is the start symbol, levels 1..L hold `width[l]`
nonterminals each, and the terminals sit below level L. Every rule of a level-l nonterminal draws
its right side from level l+1: a length uniform in the rule-length range, then each symbol
uniformly (or, with `no_repeat_symbol`, without replacement — the authors'
disallow_duplicate_sym). With `distinct_rules` (disallow_duplicate_seq) no nonterminal has the
same right side twice; without it, a right side drawn k times is kept once with weight k (the
same distribution; the DSL refuses duplicate rules). Every symbol of level l+1 is used by some
rule of level l (otherwise it would be unreachable): a draw is repaired by re-pointing slots whose
symbol is used elsewhere, or the level is drawn again when it has fewer slots than symbols below.

`levels` counts the nonterminal levels below the start symbol, so depth = levels + 1: the
authors' cfg3f (their "depth": 6) is levels=5.

Names follow the authors' numbering: terminals "1".."T"; nonterminal ids continue from T+4 (they
reserve T+1..T+3 for EOS, mask and separator), the bottom level first and the start symbol last,
so 5 levels of width 3 over 3 terminals give N7 … N22 exactly like cfg3b/f/g/h/i.
"""

from __future__ import annotations

import random
from collections import Counter

from pydantic import BaseModel, Field, model_validator

from cfglab.analysis.checks import (
    AMBIGUITY_STRINGS,
    MAX_RULES,
    CheckConstraints,
    CheckReport,
    check_grammar,
)
from cfglab.errors import CfglabError
from cfglab.grammar.core import Grammar, Rule

RESERVED_IDS = 3  # the authors' ids T+1..T+3: EOS, mask, separator
_LEVEL_DRAWS = 1000  # redraws of one level before its knobs are declared unsatisfiable
_REPAIR_PROBES = 64  # random slots tried before scanning every slot


class GeneratorKnobs(BaseModel):
    """The shape of a random layered grammar (the authors' config fields in brackets)."""

    levels: int = Field(4, ge=1, le=64)  # nonterminal levels below the start symbol [depth-1]
    width: int | list[int] = 3  # nonterminals per level, one number or one per level [sizes]
    rules: tuple[int, int] = (2, 3)  # rules per nonterminal, inclusive range [deg_min, deg_max]
    rule_length: tuple[int, int] = (2, 3)  # right-side length range [len_min, len_max]
    terminals: int = Field(3, ge=1, le=10_000)  # [num_sym]
    distinct_rules: bool = True  # no nonterminal has two equal rules [disallow_duplicate_seq]
    no_repeat_symbol: bool = False  # no symbol twice in one rule [disallow_duplicate_sym]

    @model_validator(mode="after")
    def _consistent(self) -> GeneratorKnobs:
        for name, (lo, hi) in (("rules", self.rules), ("rule_length", self.rule_length)):
            if not 1 <= lo <= hi:
                raise ValueError(f"{name} range {lo}-{hi} must satisfy 1 <= low <= high")
        if self.rule_length[1] > 64:
            raise ValueError("rule_length above 64 is not supported")
        widths = self.widths
        if len(widths) != self.levels:
            raise ValueError(f"width lists {len(widths)} levels but levels is {self.levels}")
        if min(widths) < 1:
            raise ValueError("every level needs at least one nonterminal")
        n_rules = (1 + sum(widths)) * self.rules[1]
        if n_rules > MAX_RULES:
            raise ValueError(f"up to {n_rules} rules; at most {MAX_RULES} are supported")
        return self

    @property
    def widths(self) -> list[int]:
        """Nonterminals on levels 1..L (the start symbol's level 0 is not listed)."""
        return list(self.width) if isinstance(self.width, list) else [self.width] * self.levels

    def command_args(self) -> str:
        """The `cfglab new-grammar` options that reproduce these knobs."""
        width = ",".join(map(str, self.width)) if isinstance(self.width, list) else str(self.width)
        args = [
            f"--levels {self.levels}",
            f"--width {width}",
            f"--rules {_span(self.rules)}",
            f"--rule-length {_span(self.rule_length)}",
            f"--terminals {self.terminals}",
            "--distinct-rules" if self.distinct_rules else "--no-distinct-rules",
        ]
        if self.no_repeat_symbol:
            args.append("--no-repeat-symbol")
        return " ".join(args)


def _span(r: tuple[int, int]) -> str:
    return f"{r[0]}-{r[1]}" if r[0] != r[1] else str(r[0])


# --- generation ----------------------------------------------------------------------------
def generate_grammar(knobs: GeneratorKnobs, seed: int, name: str = "random") -> Grammar:
    """A random layered grammar; the same knobs and seed always give the same grammar."""
    rng = random.Random(seed)
    sizes = [1] + knobs.widths + [knobs.terminals]  # level 0 (start) … terminals
    names = _names(sizes)
    rules: list[Rule] = []
    for level in range(len(sizes) - 1):
        bodies = _draw_level(knobs, sizes[level], sizes[level + 1], level, rng)
        below = names[level + 1]
        for nt, nt_bodies in zip(names[level], bodies):
            # Without distinct_rules a body drawn k times becomes one rule of weight k: the
            # authors' sampling distribution, in a form the DSL can write (it refuses duplicates).
            for body, k in Counter(nt_bodies).items():
                rules.append(Rule(nt, tuple(below[s] for s in body), float(k)))
    header = (
        f"{name}: a random layered grammar (cfglab new-grammar, after Allen-Zhu & Li's generator)",
        f"knobs: {knobs.command_args()}",
        f"seed: {seed}",
        f"regenerate: cfglab new-grammar {name} {knobs.command_args()} --seed {seed}",
    )
    return Grammar(
        name=name, start=names[0][0], terminals=tuple(names[-1]), rules=tuple(rules), header=header
    )


def _names(sizes: list[int]) -> list[list[str]]:
    """Symbol names per level: terminals "1".."T", nonterminal ids from T+4 bottom-up."""
    n_terms = sizes[-1]
    names: list[list[str]] = [[str(i + 1) for i in range(n_terms)]]
    next_id = n_terms + RESERVED_IDS + 1
    for size in reversed(sizes[:-1]):
        names.append([f"N{next_id + i}" for i in range(size)])
        next_id += size
    return names[::-1]


def _draw_level(
    knobs: GeneratorKnobs, width: int, below: int, level: int, rng: random.Random
) -> list[list[tuple[int, ...]]]:
    """Right sides (indices into the level below) for each of `width` nonterminals."""
    lengths = _lengths(knobs, below, level)
    capacity = _capacity(below, lengths, knobs.no_repeat_symbol)
    lo, hi = knobs.rules
    if knobs.distinct_rules and capacity < lo:
        raise CfglabError(
            f"level {level}: only {capacity} distinct rules exist over {below} "
            f"symbols, fewer than the {lo} rules each nonterminal needs"
        )
    hi = min(hi, capacity) if knobs.distinct_rules else hi
    slots = width * hi * lengths[-1]
    if slots < below:
        raise CfglabError(
            f"level {level}: its {width} nonterminal(s) have at most {slots} "
            f"right-side slots, too few to use all {below} symbols below; raise "
            "--rules or --rule-length, or narrow the level below"
        )
    for _ in range(_LEVEL_DRAWS):
        bodies = [
            _draw_rules(knobs, rng.randint(lo, hi), below, lengths, rng) for _ in range(width)
        ]
        if _cover(bodies, below, rng):
            return bodies
    raise CfglabError(
        f"level {level}: no draw in {_LEVEL_DRAWS} used every one of the {below} "
        "symbols below; raise --rules or --rule-length, or narrow the level below"
    )


def _lengths(knobs: GeneratorKnobs, below: int, level: int) -> list[int]:
    lo, hi = knobs.rule_length
    if knobs.no_repeat_symbol:
        if lo > below:
            raise CfglabError(
                f"level {level}: --no-repeat-symbol needs rules no longer than the "
                f"{below} symbol(s) below, but --rule-length starts at {lo}"
            )
        hi = min(hi, below)  # longer rules cannot avoid repeating a symbol
    return list(range(lo, hi + 1))


def _capacity(below: int, lengths: list[int], no_repeat: bool) -> int:
    """How many distinct right sides exist (capped: only compared with small rule counts)."""
    total = 0
    for n in lengths:
        count = 1
        for k in range(n):
            count *= (below - k) if no_repeat else below
        total += count
        if total > 10**9:
            break
    return total


def _draw_rules(
    knobs: GeneratorKnobs, n_rules: int, below: int, lengths: list[int], rng: random.Random
) -> list[tuple[int, ...]]:
    """n_rules right sides for one nonterminal, the authors' way: length, then symbols."""
    bodies: list[tuple[int, ...]] = []
    while len(bodies) < n_rules:
        n = rng.choice(lengths)
        if knobs.no_repeat_symbol:
            body = tuple(rng.sample(range(below), n))
        else:
            body = tuple(rng.randrange(below) for _ in range(n))
        if not (knobs.distinct_rules and body in bodies):
            bodies.append(body)
    return bodies


def _cover(bodies: list[list[tuple[int, ...]]], below: int, rng: random.Random) -> bool:
    """Re-point slots so that every symbol below is used; False when there are too few slots."""
    if sum(len(body) for nt_bodies in bodies for body in nt_bodies) < below:
        return False  # fewer slots than symbols: no re-pointing can use them all
    uses = Counter(s for nt_bodies in bodies for body in nt_bodies for s in body)
    slots = [
        (i, j, k)
        for i, nt_bodies in enumerate(bodies)
        for j, body in enumerate(nt_bodies)
        for k in range(len(body))
    ]
    for symbol in range(below):
        if uses[symbol]:
            continue
        slot = _free_slot(bodies, slots, uses, rng)
        if slot is None:
            return False
        i, j, k = slot
        body = bodies[i][j]
        uses[body[k]] -= 1
        uses[symbol] += 1
        bodies[i][j] = body[:k] + (symbol,) + body[k + 1 :]
    return True


def _free_slot(
    bodies: list[list[tuple[int, ...]]],
    slots: list[tuple[int, int, int]],
    uses: Counter,
    rng: random.Random,
) -> tuple[int, int, int] | None:
    """A random slot whose symbol is also used elsewhere (None when there is none).

    Any such slot can take an unused symbol: the new body neither repeats it (no_repeat_symbol
    holds) nor equals another body (distinct_rules holds). By pigeonhole one exists while there
    are at least as many slots as symbols below.
    """

    def fits(slot: tuple[int, int, int]) -> bool:
        i, j, k = slot
        return uses[bodies[i][j][k]] >= 2

    for _ in range(min(_REPAIR_PROBES, len(slots))):
        slot = slots[rng.randrange(len(slots))]
        if fits(slot):
            return slot
    return next((s for s in slots if fits(s)), None)


# --- generate until the checks pass ------------------------------------------------------------
def new_grammar(
    name: str,
    knobs: GeneratorKnobs,
    constraints: CheckConstraints | None = None,
    seed: int = 0,
    max_tries: int = 100,
    *,
    ambiguity_strings: int = 0,
) -> tuple[Grammar, CheckReport, int]:
    """Try seeds seed, seed+1, … (at most max_tries) until a grammar passes `check`.

    Returns (grammar, its check report, the seed that made it). The report is computed with
    `ambiguity_strings` sampled strings (0: no ambiguity analysis unless a constraint needs it).
    """
    constraints = constraints or CheckConstraints()
    if max_tries < 1:
        raise CfglabError("--max-tries must be at least 1")
    wants_ambiguity = (
        constraints.require_unambiguous or constraints.max_ambiguous_fraction is not None
    )
    n_strings = ambiguity_strings or (AMBIGUITY_STRINGS if wants_ambiguity else 0)
    failures: Counter = Counter()
    for s in range(seed, seed + max_tries):
        g = generate_grammar(knobs, s, name=name)
        report = check_grammar(g, constraints, ambiguity_strings=n_strings, seed=s)
        if report.ok:
            return g, report, s
        failures.update(f.code for f in report.errors + report.violations + report.warnings)
    common = ", ".join(f"{code} ({n})" for code, n in failures.most_common(4))
    raise CfglabError(
        f"no seed in {seed}..{seed + max_tries - 1} gave a grammar that passes the "
        f"checks; failures by kind: {common}. Relax a constraint, change the knobs, "
        "or raise --max-tries"
    )
