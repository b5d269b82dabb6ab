"""Locate-and-edit maths shared by the weight editors (METHODS.md §5): where the subject is
(subjects.py), the context prefixes keys are averaged over (templates.py), the second moment of an MLP
output projection's inputs from an offline corpus (corpus.py, statistics.py), and the residual δ that
makes the model say a target (delta.py). ROME, FT, MEMIT and AlphaEdit backends build on these; none
holds maths of its own that another needs."""
