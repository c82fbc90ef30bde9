"""The memory budget every chart keeps: one error type, one size, for the dense and sparse charts.

A chart that would pass CHART_BUDGET_BYTES is refused with a ChartBudgetError (a CfglabError, so
the CLI shows it as a message with its fix, not a traceback): the dense chart of a recursive
grammar before allocating (general.py), the sparse chart of a non-recursive one as soon as a level
would pass it (sparse.py; a batch of several strings is then charted in halves by front.py).
A caller may also bound a sparse pass's work, in rule completions (WorkBudgetError): a measure of
its time that does not depend on the machine.
"""

from __future__ import annotations

from cfglab.errors import CfglabError

CHART_BUDGET_BYTES = 256 * 2**20  # one chart (one string's, or one batch's) at most


class ChartBudgetError(CfglabError):
    """A chart would pass CHART_BUDGET_BYTES: refused before it is built."""


class SparseBudgetError(ChartBudgetError):
    """A sparse batch's chart passed the budget (a batch of several strings can be charted in
    parts)."""


class WorkBudgetError(ChartBudgetError):
    """A sparse pass would pass the rule completions its caller allowed (`max_work`)."""
