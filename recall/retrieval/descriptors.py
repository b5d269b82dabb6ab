"""Descriptors: the texts of an edit that become its retrieval keys (several per edit, best one counts)."""

from __future__ import annotations

from collections.abc import Sequence

from memory_store import EditRecord
from recall.config import KeyKind
from recall.retrieval.views import last_sentence


def key_texts(record: EditRecord, kinds: Sequence[KeyKind], last: bool = False) -> list[str]:
    """The descriptor texts of `record`, in the order of `kinds`; the question always comes first.

    Keying on the question alone matches paraphrases of the question; the statement (question +
    answer) also matches questions phrased around the new answer; the subject catches questions
    that name the entity in other words. A missing subject is skipped. With `last`
    (retrieval.last_sentence), a question that ends a longer text is keyed as its last sentence first
    and as a whole after it: the first key is what conflicts and current-over-stale compare
    (recall/retrieval/conflicts.py, current.py), and the sentences before a question are not it.
    """
    texts: list[str] = []
    for kind in kinds:
        if kind == "question":
            tail = last_sentence(record.prompt) if last else None
            texts += [record.prompt] if tail is None else [tail, record.prompt]
        elif kind == "statement":
            texts.append(record.statement)
        elif kind == "subject" and record.subject:
            texts.append(record.subject)
    return texts or [record.prompt]
