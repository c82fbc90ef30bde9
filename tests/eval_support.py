"""Shared pieces of the tests/test_eval_*.py suites: small grammars and one trained run each.

The trained runs are cached per process (trained once however many test files ask for them) in a
temporary directory removed at exit.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfglab.evaluate.judge import Judge
from cfglab.grammar.core import Grammar
from cfglab.grammar.dsl import parse_grammar

if TYPE_CHECKING:
    from cfglab.runs import TrainConfig

# Eight strings of length 3-5, each with probability 1/8; no string parses two ways.
TINY = """grammar tiny
start S
S -> A B | B A
A -> "a" "b" | "b"
B -> "c" A
"""
TINY_STRINGS = [
    "a b c a b",
    "a b c b",
    "b c a b",
    "b c b",
    "c a b a b",
    "c a b b",
    "c b a b",
    "c b b",
]

# One string: the true next token is certain at every position.
SINGLE = """grammar single
start S
S -> "a" "b" "c"
"""

# Longer strings (a cut of 4 leaves room) with a rule a held-out run can avoid.
LONGER = """grammar longer
start S
S -> X X Y | Y X
X -> "a" Z | Z "b"
Y -> Z Z "c" | "c" Z
Z -> "a" "b" | "b" "a" "a" | "c" "a"
"""

# LONGER with its terminals hidden behind bags of observed tokens (Result 10): disjoint bags, and
# overlapping ones (t0 in the bags of "a" and "b", weights NU1-like) whose hidden terminal a
# token does not always tell.
LONGER_IMPLICIT = LONGER.replace("grammar longer", "grammar longer_implicit") + (
    'bag "a" -> "t0" "t3" "t6" "t9"\n'
    'bag "b" -> "t1" "t4" "t7" "t10"\n'
    'bag "c" -> "t2" "t5" "t8" "t11"\n'
)
LONGER_OVERLAP = LONGER.replace("grammar longer", "grammar longer_overlap") + (
    'bag "a" -> "t0" "t1" [2] "t2" [3]\nbag "b" -> "t0" "t3" [2]\nbag "c" -> "t4" "t5"\n'
)


def grammar(text: str) -> Grammar:
    return parse_grammar(text)


@cache
def judge(text: str) -> Judge:
    return Judge(parse_grammar(text))


_ROOT: list[Path] = []


def _root() -> Path:
    if not _ROOT:
        _ROOT.append(Path(tempfile.mkdtemp(prefix="cfglab-eval-tests-")))
        atexit.register(shutil.rmtree, _ROOT[0], True)
    return _ROOT[0]


def trained_run(pe: str = "rot", holdout_rule: str | None = None) -> Path:
    """A tiny model trained 30 steps on LONGER (seconds on one thread)."""
    return _trained_run(pe, holdout_rule)  # one cache key per run: `()` and `("rot")` alike


@cache
def _trained_run(pe: str, holdout_rule: str | None) -> Path:
    from cfglab.train import train

    root = _root()
    gfile = root / "longer.cfg"
    gfile.write_text(LONGER)
    name = f"run-{pe}-{'holdout' if holdout_rule else 'plain'}"
    return train(tiny_config(gfile, pe, holdout_rule=holdout_rule), root / name, quiet=True)


def implicit_run(text: str = LONGER_IMPLICIT) -> Path:
    """`trained_run`'s recipe on an implicit grammar (LONGER_IMPLICIT or LONGER_OVERLAP)."""
    return _implicit_run(text)  # one cache key per grammar, given or defaulted


@cache
def _implicit_run(text: str) -> Path:
    from cfglab.train import train

    root = _root()
    name = parse_grammar(text).name
    gfile = root / f"{name}.cfg"
    gfile.write_text(text)
    return train(tiny_config(gfile), root / f"run-{name}", quiet=True)


def tiny_config(grammar: Path, pe: str = "rot", **override: Any) -> TrainConfig:
    """The tiny recipe of `trained_run`: 1 layer, 2 heads, 16 dims, 30 steps on one thread."""
    from cfglab.runs import TrainConfig

    fields: dict[str, Any] = {
        "grammar": str(grammar),
        "pe": pe,
        "layers": 1,
        "heads": 2,
        "dim": 16,
        "context": 64,
        "batch": 8,
        "steps": 30,
        "lr": 3e-3,
        "threads": 1,
        "checkpoint_every": 30,
        "eval_every": 30,
        "eval_batches": 1,
        "log_every": 10,
        "chunk_strings": 64,
    }
    return TrainConfig(**(fields | override))
