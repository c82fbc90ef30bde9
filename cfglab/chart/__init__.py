"""The exact algorithms: one semiring dynamic program over a grammar's parse trees.

semiring   the value algebras (boolean, counting, log-inside, min-plus, ...)
sparse     the schedule for non-recursive grammars: only derivable spans, level by level
window     dense windows over bounded span lengths (min-plus repairs)
general    CKY by span length over the binarised grammar (recursive grammars)
front      `Chart`: membership, counts, inside, repairs, next-token rows, on top of the three
earley     lark's Earley parser as an independent reference (tests and benchmarks only)
"""
