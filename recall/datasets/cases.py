"""EvalCase, the one record shape every benchmark loader produces, and DatasetError."""

from __future__ import annotations

import re
import string
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recall.errors import RecallError

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation and the articles a/an/the, collapse whitespace (SQuAD style)."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


class DatasetError(RecallError, ValueError):
    """A data file is missing, unreadable, of an unknown form, or a record lacks a field."""


class EmptyEditError(DatasetError):
    """A record whose prompt or target is empty (zsRE train-1k has two); loaders skip these and count them."""


@dataclass(frozen=True, slots=True)
class EvalCase:
    """One benchmark case: an edit plus the probes that score it.

    Attributes:
        case_id: the data set's own id when it has one, else the record's index in the file.
        prompt: the edit prompt (a question for zsRE, a cloze sentence for CounterFact).
        target: the new answer the edit teaches, stripped of surrounding whitespace.
        subject: the edited entity, when the data set names it.
        ground_truth: the original (pre-edit) answer, when known; ES/PS compare against it.
        rephrases: paraphrases of `prompt` (generalization).
        locality: (prompt, answer) pairs the edit must not change.
        portability: (prompt, answer) pairs whose answer follows from the edit.
        is_noop: the target equals the original answer, so the "edit" changes nothing. Such cases
            are kept (dropping them would change "the first n") and counted in reports.
    """

    case_id: str
    prompt: str
    target: str
    subject: str | None = None
    ground_truth: str | None = None
    rephrases: tuple[str, ...] = ()
    locality: tuple[tuple[str, str], ...] = ()
    portability: tuple[tuple[str, str], ...] = ()
    is_noop: bool = False


def subject_groups(cases: Sequence[EvalCase]) -> dict[str, list[EvalCase]]:
    """The cases that name a subject, grouped by it (normalised as answers are), in case order."""
    groups: defaultdict[str, list[EvalCase]] = defaultdict(list)
    for case in cases:
        if case.subject:
            groups[normalize_answer(case.subject)].append(case)
    return dict(groups)


def shared_subjects(cases: Sequence[EvalCase]) -> list[bool | None]:
    """Per case: whether another of `cases` (edits in memory at the same time) names the same subject
    with another target, both compared as normalised answers. None for a case that names no subject.

    On zsRE such cases are one fact asked in other words with another answer (396 of the first 1000
    records of the MEND eval set): nothing in a rephrase tells which of them it paraphrases, so a memory
    that keeps every edit can only guess. Reports show them apart.
    """
    targets = {
        subject: {normalize_answer(c.target) for c in group}
        for subject, group in subject_groups(cases).items()
    }
    return [
        bool(targets[normalize_answer(c.subject)] - {normalize_answer(c.target)}) if c.subject else None
        for c in cases
    ]


def _word_runs(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


def locality_names_edited(cases: Sequence[EvalCase]) -> list[bool | None]:
    """Per case: whether one of its locality prompts names, word for word (case aside), the subject of
    one of `cases` (edits in memory at the same time). None for a case without locality prompts.

    Such a prompt asks about a subject the memory changes, often the very fact ("Bordeaux is a twin city
    of" beside the edit "Bordeaux is a twin city of -> Seoul"; CounterFact repeats subjects): the memory
    should answer it with the edit, and locality, agreement with the unedited model, counts that as a
    failure. Reports show such cases apart."""
    subjects = {" ".join(_word_runs(c.subject)) for c in cases if c.subject}
    subjects.discard("")
    longest = max((s.count(" ") + 1 for s in subjects), default=0)

    def names(prompt: str) -> bool:
        runs = _word_runs(prompt)
        return any(
            " ".join(runs[i : i + n]) in subjects
            for n in range(1, longest + 1)
            for i in range(len(runs) - n + 1)
        )

    return [any(names(q) for q, _ in c.locality) if c.locality else None for c in cases]


class RecordReader:
    """Typed field access on one raw record; every failure names the file, the index and the key.

    `where` names a nested object inside the record (e.g. "requested_rewrite[1]") for error messages.
    """

    def __init__(self, record: object, path: Path, index: int, where: str = "") -> None:
        self.path = path
        self.index = index
        self.where = where
        if not isinstance(record, Mapping):
            raise self.error(f"expected a JSON object, got {type(record).__name__}")
        self.record: Mapping[str, Any] = record

    def error(self, message: str) -> DatasetError:
        where = f"{self.where}: " if self.where else ""
        return DatasetError(f"{self.path}: record {self.index}: {where}{message}")

    def nested(self, key: str) -> RecordReader:
        """A reader on the JSON object under `key`, whose errors name that key."""
        where = f"{self.where}.{key}" if self.where else key
        return RecordReader(self.raw(key), self.path, self.index, where)

    def has(self, key: str) -> bool:
        return key in self.record

    def raw(self, key: str) -> Any:
        if key not in self.record:
            keys = ", ".join(sorted(map(str, self.record))) or "none"
            raise self.error(f"missing key {key!r} (keys present: {keys})")
        return self.record[key]

    def text(self, key: str) -> str:
        value = self.raw(key)
        if not isinstance(value, str):
            raise self.error(f"key {key!r} should be a string, got {type(value).__name__}")
        return value

    def optional_text(self, key: str) -> str | None:
        return self.text(key) if self.record.get(key) is not None else None

    def texts(self, key: str) -> tuple[str, ...]:
        """A string or a list of strings, as a tuple; an absent key gives ()."""
        value = self.record.get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise self.error(f"key {key!r} should be a string or a list of strings")

    def pairs(self, key: str) -> tuple[tuple[str, str], ...]:
        """A list of [prompt, answer] pairs (the jsonl form); an absent key gives ()."""
        value = self.record.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.error(f"key {key!r} should be a list of [prompt, answer] pairs")
        pairs: list[tuple[str, str]] = []
        for item in value:
            if not (
                isinstance(item, list | tuple) and len(item) == 2 and all(isinstance(s, str) for s in item)
            ):
                raise self.error(f"key {key!r}: each item should be a [prompt, answer] pair, got {item!r}")
            pairs.append((item[0], item[1]))
        return tuple(pairs)

    def case_id(self, key: str = "case_id") -> str:
        value = self.record.get(key)
        return str(self.index) if value is None else str(value)
