"""What can be said of a grammar before any model sees it: checks (well-formedness, levels,
depth, lengths) and ambiguity (sampled strings with several parse trees, by the chart)."""
