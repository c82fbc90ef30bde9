"""The semirings the chart runs over: each is two numpy ufuncs and their identities.

A chart value of a span is the semiring sum, over the span's derivations, of the semiring product
of its parts. Writing the dynamic program once in terms of `plus` (aggregate alternatives: rules,
split points) and `times` (combine the parts of one rule) gives every quantity cfglab needs:

  name          values               plus        times         rule weight   a leaf that mismatches
  boolean       bool                 or          and           True          (absent)
  counting      float64 / int (big)  +           *             1             (absent)
  log_inside    float64 log prob     logaddexp   +             log p(rule)   (absent)
  min_plus      float64 substitutions min        +             0             1 (one substitution)

Numpy ufuncs bring `.reduce`, `.reduceat` and `.at` for free, on object arrays too, so the exact
big-integer counting semiring is the counting semiring with dtype=object. Min-plus runs in
float64 so that "no derivation" is +inf and sums never overflow; its values are small integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# Counting runs in float64 first; its results are exact integers while every value stays below
# 2**53 (values only grow along the program: sums and products of nonnegative counts).
EXACT_FLOAT_LIMIT = float(2**53)


@dataclass(frozen=True)
class Semiring:
    """(plus, times) over numpy values; `zero` annihilates and is never stored in a sparse chart."""

    name: str
    dtype: Any
    plus: np.ufunc
    times: np.ufunc
    zero: Any
    one: Any
    mismatch: Any = None  # a leaf whose token differs from the string's: None = no leaf at all
    power: float = (
        1.0  # log_inside only: rules weigh p^power, so a string's value is Σ_t p(t)^power
    )

    def rule_values(self, rule_prob: np.ndarray) -> np.ndarray:
        """How each rule's probability enters a derivation's product."""
        if self.name == "log_inside":
            return self.power * np.log(rule_prob)
        return np.full(len(rule_prob), self.one, dtype=self.dtype)

    def full(self, shape: int | tuple[int, ...], value: Any) -> np.ndarray:
        arr = np.empty(shape, dtype=self.dtype)
        arr.fill(value)
        return arr


BOOLEAN = Semiring("boolean", np.bool_, np.logical_or, np.logical_and, False, True)
COUNTING = Semiring("counting", np.float64, np.add, np.multiply, 0.0, 1.0)
BIG_COUNTING = Semiring("big_counting", object, np.add, np.multiply, 0, 1)
LOG_INSIDE = Semiring("log_inside", np.float64, np.logaddexp, np.add, -np.inf, 0.0)
MIN_PLUS = Semiring("min_plus", np.float64, np.minimum, np.add, np.inf, 0.0, mismatch=1.0)

SEMIRINGS: dict[str, Semiring] = {
    s.name: s for s in (BOOLEAN, COUNTING, BIG_COUNTING, LOG_INSIDE, MIN_PLUS)
}
