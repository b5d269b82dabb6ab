"""TrainingError: a run that cannot start or go on (bad data, overlap with evaluation splits)."""

from __future__ import annotations

from recall.errors import RecallError


class TrainingError(RecallError):
    """A training run that cannot start or go on; the message says what to change."""
