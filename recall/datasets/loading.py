"""Load benchmark files (a JSON list or JSON lines) into EvalCase lists, with their sha256 for the stamp."""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from memory_store.records import remove_unstorable
from recall.datasets.cases import DatasetError, EmptyEditError, EvalCase, RecordReader
from recall.datasets.formats import CONVERTERS, FORMATS, DatasetFormat, detect_format
from recall.digests import file_sha256

__all__ = [
    "FORMATS",
    "SAMPLE",
    "DatasetError",
    "DatasetFormat",
    "EvalCase",
    "EvalDataset",
    "file_sha256",
    "load_cases",
    "load_dataset",
]

logger = logging.getLogger(__name__)

# 50 ZsRE eval records shipped for the demo and bench (source and license: recall/data/README.md).
SAMPLE = Path(__file__).parent.parent / "data" / "zsre_sample.json"

FormatName = Literal["auto", DatasetFormat]  # what a caller may ask for: a form, or decide it


@dataclass(frozen=True, slots=True)
class EvalDataset:
    """The cases taken from one file, and what a report needs to name that file exactly."""

    path: Path
    format: DatasetFormat  # the resolved form, never "auto"
    sha256: str  # of the whole file, so two reports on "the first 1000" can be compared
    num_records: int  # records in the file, before taking n
    cases: tuple[EvalCase, ...]
    skipped: tuple[int, ...] = ()  # indices of records with an empty prompt or target, passed over
    records_used: int | None = None  # records the cases came from (more cases than this for MQuAKE)
    target_words: tuple[int, int] | None = None  # only records with targets of this many words


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such data file") from None
    except IsADirectoryError:
        raise DatasetError(f"{path}: is a directory, not a data file") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror})") from exc


def _parse_records(path: Path, data: bytes) -> list[object]:
    """A JSON list of records, or one JSON object per line (blank lines skipped), every string without
    the characters recall refuses in an edit or a question (`_cleaned`)."""
    return [_cleaned(record) for record in _json_records(path, data)]


def _cleaned(value: object) -> object:
    """`value` with each string stripped of control and invisible format characters: benchmark text
    holds a few (ZsRE's locality answers: BOMs around coordinates, zero-width spaces), which recall
    would refuse as a question or an edit."""
    if isinstance(value, str):
        return remove_unstorable(value)
    if isinstance(value, list):
        return [_cleaned(v) for v in value]
    if isinstance(value, dict):
        return {k: _cleaned(v) for k, v in value.items()}
    return value


def _json_records(path: Path, data: bytes) -> list[object]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
        return list(records)
    parsed: list[object] = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"{path}: line {line_number} is not a JSON object ({exc.msg}); expected a JSON list "
                "of records or one JSON object per line"
            ) from exc
    return parsed


def _format_hint(path: Path, first: object, format: FormatName) -> str:
    """When --format was forced and the records look like another form, say so: that is the usual fix."""
    if format == "auto":
        return ""
    try:
        detected = detect_format(RecordReader(first, path, 0))
    except DatasetError:
        return ""
    return (
        ""
        if detected == format
        else f" (the records look like {detected!r}: try --format {detected} or auto)"
    )


def _convert(
    path: Path,
    records: list[object],
    order: list[int],
    form: DatasetFormat,
    n: int | None,
    target_words: tuple[int, int] | None = None,
) -> tuple[list[EvalCase], list[int], int]:
    """Convert records in `order` until n have given cases; only those are checked, so a bad record past
    n does not stop a run. Records with an empty prompt or target cannot be edits: skipped and logged.
    With `target_words` (low, high), records whose targets have another number of words are passed over.
    Returns the cases, the skipped indices and the number of records converted."""
    convert = CONVERTERS[form]
    cases: list[EvalCase] = []
    skipped: list[int] = []
    used = 0
    for index in order:
        if n is not None and used >= n:
            break
        try:
            converted = convert(RecordReader(records[index], path, index))
            if target_words and not all(
                target_words[0] <= len(c.target.split()) <= target_words[1] for c in converted
            ):
                continue
            cases.extend(converted)
            used += 1
        except EmptyEditError as exc:
            logger.warning("skipping %s", exc)
            skipped.append(index)
    return cases, skipped, used


def load_dataset(
    path: str | Path,
    format: FormatName = "auto",
    n: int | None = None,
    *,
    shuffle_seed: int | None = None,
    target_words: tuple[int, int] | None = None,
) -> EvalDataset:
    """Read a data file and convert its records to EvalCase.

    Args:
        path: a JSON list of records or a JSON-lines file.
        format: the record form; "auto" decides from the first record's keys.
        n: keep the cases of the first n records (in file order, or in shuffled order with
            `shuffle_seed`); records with an empty prompt or target are skipped, logged, listed in
            `EvalDataset.skipped` and not counted. A record is one case in every form but MQuAKE, where
            it is one case per edit, so n=100 MQuAKE records give more than 100 cases.
        shuffle_seed: shuffle all records with `random.Random(seed)` before taking n (RECIPE shuffles its
            eval set with seed 0); None keeps file order so "the first 1000" is reproducible by eye.
        target_words: (low, high): only records whose targets have low..high words (long answers);
            n counts those.

    Raises:
        DatasetError: the file is missing or malformed, or a kept record lacks a field; the message names
            the file, the record index and the key.
    """
    path = Path(path)
    if n is not None and n < 1:
        raise DatasetError(f"n must be at least 1, got {n}")
    if format != "auto" and format not in FORMATS:
        raise DatasetError(f"unknown data format {format!r}; choose auto or one of {', '.join(FORMATS)}")
    data = _read_bytes(path)
    records = _parse_records(path, data)
    if not records:
        raise DatasetError(f"{path}: holds no records")
    resolved = detect_format(RecordReader(records[0], path, 0)) if format == "auto" else format
    order = list(range(len(records)))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(order)
    try:
        cases, skipped, used = _convert(path, records, order, resolved, n, target_words)
    except DatasetError as exc:
        raise DatasetError(f"{exc}{_format_hint(path, records[0], format)}") from exc
    if n is not None and used < n:
        logger.warning("%s holds %d usable records, fewer than the %d asked for", path, used, n)
    return EvalDataset(
        path=path,
        format=resolved,
        sha256=hashlib.sha256(data).hexdigest(),
        num_records=len(records),
        cases=tuple(cases),
        skipped=tuple(skipped),
        records_used=used,
        target_words=target_words,
    )


def load_cases(path: str | Path, format: FormatName = "auto", n: int | None = None) -> list[EvalCase]:
    """The cases of the first n records of a data file, in file order (see `load_dataset`)."""
    return list(load_dataset(path, format, n).cases)
