"""GRACE (METHODS.md §3): codebook.py the ε-ball codebook, backend.py the two backends (`grace`, keyed by
the balls; `grace_retrieval`, keyed by recall's retrieval)."""

from recall.backends.grace.backend import GraceBackend, GraceConfig, RetrievalGraceBackend

__all__ = ["GraceBackend", "GraceConfig", "RetrievalGraceBackend"]
