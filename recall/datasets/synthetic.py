"""Synthetic edits for benchmarks that need more edits than the bundled sample holds: each about its own
numbered employee, so no two are the same question (recall/retrieval/identifiers.py)."""

from __future__ import annotations

COLOURS = ("red", "blue", "green", "amber", "violet", "teal", "ochre", "silver")


def synthetic_edits(n: int, start: int = 0) -> list[tuple[str, str, str]]:
    """(prompt, target, subject) for employees start .. start + n - 1."""
    return [
        (
            f"What is the favourite colour of employee number {i} at Zorblax?",
            COLOURS[i % len(COLOURS)],
            f"employee number {i}",
        )
        for i in range(start, start + n)
    ]
