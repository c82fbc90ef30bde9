"""The paper's names for tree levels, so a table or plot can be matched to the paper's figures.

cfglab numbers levels by tree depth: the root is level 0, its children level 1, and so on
(`cfglab.grammar.sample`). Part 1 names the nonterminal levels NT1 (the root's) … NT6 for the
cfg3 grammars, and the terminals sit on level 7; so cfglab level l is the paper's NT{l+1}, and
the level below the root is NT2. (Taken from the project's reading of the paper, DESIGN.md and
the fidelity review: the paper's own figures label NT2…NT6; NT1, the root, is never probed there.)
"""

from __future__ import annotations


def level_name(level: int) -> str:
    """The paper's name of cfglab's level (tree depth) `level`: NT{level+1}."""
    return f"NT{level + 1}"


def level_label(level: int) -> str:
    """`level 2 (NT3)`: cfglab's number beside the paper's name."""
    return f"level {level} ({level_name(level)})"
