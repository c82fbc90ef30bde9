"""Small grammars in the DSL shared by several test files."""

# layered, two levels of nonterminals, strings of 3-10 tokens: quick to train and probe
LAYERED = """grammar layered
start S
S -> A B | B A
A -> C D | D C C
B -> D D | C D C
C -> "1" "2" | "3" "3" "1"
D -> "2" "1" | "3"
"""
