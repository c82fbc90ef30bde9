"""Inside the model: linear probes for nonterminal ancestors and boundaries, attention-pattern
statistics, and their plots. Behavioural measures (what the model generates) live in
`cfglab.evaluate`."""
