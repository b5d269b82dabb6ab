"""EditRecord serialisation and validate_record: every kind of bad input gets InvalidEditError."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import pytest

from memory_store import EditRecord, InvalidEditError, StoreError, new_edit_id, validate_record


def test_new_edit_id_is_uuid4_hex_and_unique() -> None:
    ids = {new_edit_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_record_defaults() -> None:
    rec = EditRecord(prompt="Q?", target="A")
    assert rec.status == "active"
    assert rec.namespace == "default"
    assert rec.supersedes is None
    assert rec.statement == ""
    assert re.fullmatch(r"[0-9a-f]{32}", rec.edit_id)
    assert rec.edit_id != EditRecord(prompt="Q?", target="A").edit_id


def test_to_dict_from_dict_round_trip() -> None:
    rec = EditRecord(
        prompt="Who leads Acme?", target="Jane", subject="Acme", statement="Who leads Acme? Jane",
        namespace="work", meta={"source": "user"}, supersedes="abc",
    )  # fmt: skip
    data = rec.to_dict()
    assert data["meta"] == {"source": "user"}
    assert EditRecord.from_dict(data) == rec


def test_from_dict_rejects_unknown_and_missing_keys() -> None:
    with pytest.raises(InvalidEditError, match=r"unknown keys \['colour'\]"):
        EditRecord.from_dict({"prompt": "Q", "target": "A", "colour": "red"})
    with pytest.raises(InvalidEditError, match="without \\['target'\\]"):
        EditRecord.from_dict({"prompt": "Q"})


GOOD = EditRecord(prompt="Q?", target="A", subject="S", statement="Q? A")

BAD: list[tuple[str, dict[str, Any], str]] = [
    ("empty prompt", {"prompt": ""}, "prompt expected non-empty text, received ''"),
    ("whitespace target", {"target": " \n\t "}, "target expected non-empty text"),
    ("prompt not str", {"prompt": b"Q"}, "prompt expected a str, received bytes"),
    (
        "NUL in prompt",
        {"prompt": "Q\x00?"},
        r"prompt expected text without control or invisible format characters.*'\\x00' at index 1",
    ),
    ("escape in target", {"target": "A\x1b[31m"}, r"'\\x1b' at index 1"),
    ("carriage return", {"statement": "a\r\nb"}, r"statement expected text without control.*'\\r'"),
    ("DEL", {"subject": "x\x7f"}, r"subject expected text without control"),
    ("C1 control", {"target": "A\x85"}, "target expected text without control"),
    ("lone surrogate", {"prompt": "Q\ud800"}, "prompt expected text without control"),
    ("too long", {"prompt": "x" * 10_001}, "prompt expected at most 10000 characters, received 10001"),
    ("empty namespace", {"namespace": ""}, "namespace expected non-empty text"),
    ("long namespace", {"namespace": "n" * 201}, "namespace expected at most 200 characters"),
    ("namespace control", {"namespace": "a\tb"}, "namespace expected"),
    ("bad edit_id", {"edit_id": "has space"}, "edit_id expected 1-64 characters"),
    ("empty edit_id", {"edit_id": ""}, "edit_id expected"),
    ("bad supersedes", {"supersedes": "a/b"}, "supersedes expected"),
    ("nan created_at", {"created_at": math.nan}, "created_at expected a finite float"),
    ("str created_at", {"created_at": "now"}, "created_at expected a finite float"),
    ("bad status", {"status": "deleted"}, "status expected one of"),
    ("meta not mapping", {"meta": [("a", "b")]}, "meta expected a mapping of str to str, received list"),
    ("meta value not str", {"meta": {"a": 1}}, r"meta\['a'\] expected a str, received int"),
    ("meta key not str", {"meta": {1: "a"}}, "meta keys expected non-empty str"),
    ("meta value control", {"meta": {"a": "\x00"}}, r"meta\['a'\] expected text without control"),
]


@pytest.mark.parametrize(
    ("changes", "message"), [(c, m) for _, c, m in BAD], ids=[name for name, _, _ in BAD]
)
def test_validate_record_rejects(changes: dict[str, Any], message: str) -> None:
    bad = dataclasses.replace(GOOD, **changes)
    with pytest.raises(InvalidEditError, match=message) as info:
        validate_record(bad)
    assert isinstance(info.value, StoreError)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "changes",
    [
        {"prompt": "line one\nline two\tTabbed"},
        {"prompt": "x" * 10_000},
        {"target": "Zürich, 東京, emoji 🙂"},
        {"subject": None},
        {"subject": ""},
        {"statement": ""},
        {"edit_id": "custom-id_1.2:3"},
        {"meta": {"source": "import", "note": ""}},
    ],
)
def test_validate_record_accepts(changes: dict[str, Any]) -> None:
    validate_record(dataclasses.replace(GOOD, **changes))


def test_long_text_message_is_shortened() -> None:
    with pytest.raises(InvalidEditError) as info:
        validate_record(dataclasses.replace(GOOD, prompt="y" * 50_000))
    assert len(str(info.value)) < 400


def test_max_text_chars_is_configurable() -> None:
    validate_record(dataclasses.replace(GOOD, target="z" * 20), max_text_chars=20)
    with pytest.raises(InvalidEditError, match="at most 20 characters, received 21"):
        validate_record(dataclasses.replace(GOOD, target="z" * 21), max_text_chars=20)


def test_not_a_record() -> None:
    with pytest.raises(InvalidEditError, match="expected an EditRecord, received dict"):
        validate_record({"prompt": "Q", "target": "A"})  # type: ignore[arg-type]
