"""Every bad input gets its own StoreError subclass with a useful message and leaves the store unchanged."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from store_helpers import DIM, record, unit

import memory_store
from memory_store import (
    CorruptStoreError,
    DimensionMismatchError,
    DuplicateEditError,
    EditNotFoundError,
    EditRecord,
    IncompatibleArtifactError,
    InvalidArgumentError,
    InvalidEditError,
    InvalidTransitionError,
    InvalidVectorError,
    MemoryNotFoundError,
    MemoryStore,
    StoreClosedError,
    StoreError,
    StoreLockedError,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def snapshot(store: MemoryStore, queries: np.ndarray) -> tuple[object, ...]:
    """Everything observable about a store, to compare before and after a failed call."""
    edits = store.list(status=None)
    return (
        [r.to_dict() for r in edits],
        {r.edit_id: [(e.kind, e.reason) for e in store.history(r.edit_id)] for r in edits},
        store.search(queries, k=5, namespace=None),
        store.count(None, None),
    )


@pytest.fixture
def filled(store: MemoryStore, rng: np.random.Generator) -> tuple[MemoryStore, list[EditRecord], np.ndarray]:
    keys = unit(rng, 6)
    recs = store.add_many([record(i) for i in range(6)], keys)
    store.retract(recs[5].edit_id)
    return store, recs, keys


Call = Callable[[MemoryStore, list[EditRecord], np.ndarray], object]
RNG = np.random.default_rng(0)
SAME = "same-id"


def twin(i: int) -> EditRecord:
    """Records that all share one edit_id."""
    return dataclasses.replace(record(i), edit_id=SAME)


def case(name: str, error: type[StoreError], message: str, call: Call) -> object:
    return pytest.param(error, message, call, id=name)


BAD_CALLS = [
    case("wrong dim", DimensionMismatchError, r"expected dim 16 .*received shape \(1, 15\)",
         lambda s, r, k: s.add(record(9), np.ones(15, np.float32))),
    case("nan", InvalidVectorError, "expected finite float32 values, received .*nan",
         lambda s, r, k: s.add(record(9), np.full(DIM, np.nan, np.float32))),
    case("inf", InvalidVectorError, "received .*inf",
         lambda s, r, k: s.add(record(9), np.r_[np.inf, np.ones(DIM - 1)].astype(np.float32))),
    case("float64 overflow", InvalidVectorError, "float64 values beyond float32 range",
         lambda s, r, k: s.add(record(9), np.full(DIM, 1e300))),
    case("zero key", InvalidVectorError, "all-zero row 0",
         lambda s, r, k: s.add(record(9), np.zeros(DIM, np.float32))),
    case("int vector", InvalidVectorError, "expected a float32 array, received dtype int64",
         lambda s, r, k: s.add(record(9), np.ones(DIM, np.int64))),
    case("no keys", InvalidVectorError, "at least one key",
         lambda s, r, k: s.add(record(9), np.zeros((0, DIM), np.float32))),
    case("3-d vector", InvalidVectorError, r"shape \(dim,\) or \(n, dim\)",
         lambda s, r, k: s.add(record(9), np.ones((1, 1, DIM), np.float32))),
    case("empty prompt", InvalidEditError, "prompt expected non-empty text",
         lambda s, r, k: s.add(EditRecord(prompt="  ", target="A"), k[0])),
    case("control char", InvalidEditError, "without control or invisible format characters",
         lambda s, r, k: s.add(EditRecord(prompt="Q\x00", target="A"), k[0])),
    case("too long", InvalidEditError, "at most 10000 characters",
         lambda s, r, k: s.add(EditRecord(prompt="Q" * 10_001, target="A"), k[0])),
    case("not active", InvalidEditError, "expected status 'active', received 'retracted'",
         lambda s, r, k: s.add(dataclasses.replace(record(9), status="retracted"), k[0])),
    case("duplicate id", DuplicateEditError, "already stored", lambda s, r, k: s.add(r[0], k[0])),
    case("duplicate in batch", DuplicateEditError, "repeated",
         lambda s, r, k: s.add_many([record(9), twin(10), twin(11)], unit(RNG, 3))),
    case("batch with one bad record", InvalidEditError, "target expected non-empty",
         lambda s, r, k: s.add_many([record(9), EditRecord(prompt="Q", target="")], unit(RNG, 2))),
    case("batch with one bad vector", InvalidVectorError, r"vectors\[1\]",
         lambda s, r, k: s.add_many([record(9), record(10)], [k[0], np.full(DIM, np.nan)])),
    case("count mismatch", InvalidArgumentError, r"one vector entry per record \(2\), received 3",
         lambda s, r, k: s.add_many([record(9), record(10)], unit(RNG, 3))),
    case("unknown get", EditNotFoundError, "received 'nope'", lambda s, r, k: s.get("nope")),
    case("unknown retract", EditNotFoundError, "received 'nope'", lambda s, r, k: s.retract("nope")),
    case("unknown restore", EditNotFoundError, "received 'nope'", lambda s, r, k: s.restore("nope")),
    case("unknown history", EditNotFoundError, "received 'nope'", lambda s, r, k: s.history("nope")),
    case("unknown vectors", EditNotFoundError, "received 'nope'", lambda s, r, k: s.vectors("nope")),
    case("unknown supersede", EditNotFoundError, "received 'nope'",
         lambda s, r, k: s.supersede("nope", record(9), k[0])),
    case("retract twice", InvalidTransitionError, "received status 'retracted'",
         lambda s, r, k: s.retract(r[5].edit_id)),
    case("restore active", InvalidTransitionError, "received status 'active'",
         lambda s, r, k: s.restore(r[0].edit_id)),
    case("supersede retracted", InvalidTransitionError, "supersede.*received status 'retracted'",
         lambda s, r, k: s.supersede(r[5].edit_id, record(9), k[0])),
    case("supersede with own id", DuplicateEditError, "already stored",
         lambda s, r, k: s.supersede(r[0].edit_id, r[0], k[0])),
    case("supersede bad vector", DimensionMismatchError, "expected dim 16",
         lambda s, r, k: s.supersede(r[0].edit_id, record(9), np.ones(3, np.float32))),
    case("reason control", InvalidEditError, "reason expected text without control",
         lambda s, r, k: s.retract(r[0].edit_id, reason="\x07")),
    case("k zero", InvalidArgumentError, "k expected a positive int, received 0",
         lambda s, r, k: s.search(k[0], k=0)),
    case("k bool", InvalidArgumentError, "k expected a positive int", lambda s, r, k: s.search(k[0], k=True)),
    case("query dim", DimensionMismatchError, "queries expected dim 16",
         lambda s, r, k: s.search(np.ones(4, np.float32))),
    case("query nan", InvalidVectorError, "queries expected finite",
         lambda s, r, k: s.search(np.full(DIM, np.nan))),
    case("bad namespace", InvalidEditError, "namespace expected",
         lambda s, r, k: s.search(k[0], namespace="")),
    case("empty namespaces", InvalidArgumentError, "non-empty sequence",
         lambda s, r, k: s.search(k[0], namespace=[])),
    case("bad status filter", InvalidArgumentError, "status expected one of",
         lambda s, r, k: s.list(status="deleted")),  # type: ignore[arg-type]
    case("manifest not json", InvalidArgumentError, "JSON-serialisable",
         lambda s, r, k: s.update_manifest({"x": object()})),
]  # fmt: skip


@pytest.mark.parametrize(("error", "message", "call"), BAD_CALLS)
def test_bad_call_raises_and_changes_nothing(
    filled: tuple[MemoryStore, list[EditRecord], np.ndarray],
    error: type[StoreError],
    message: str,
    call: Callable[[MemoryStore, list[EditRecord], np.ndarray], object],
) -> None:
    store, recs, keys = filled
    manifest = store.manifest
    before = snapshot(store, keys)
    with pytest.raises(error, match=message) as info:
        call(store, recs, keys)
    assert isinstance(info.value, StoreError)
    assert snapshot(store, keys) == before
    assert store.manifest == manifest
    store.verify()


def test_value_and_key_error_compatibility() -> None:
    assert issubclass(InvalidEditError, ValueError)
    assert issubclass(DimensionMismatchError, ValueError)
    assert issubclass(EditNotFoundError, KeyError)
    assert issubclass(MemoryNotFoundError, FileNotFoundError)
    assert str(EditNotFoundError("no edit 'x'")) == "no edit 'x'"  # not repr-quoted like KeyError


def test_every_error_is_exported() -> None:
    errors = [n for n in dir(memory_store.errors) if n.endswith("Error")]
    assert set(errors) <= set(memory_store.__all__)
    assert all(issubclass(getattr(memory_store, n), StoreError) for n in errors)


def test_open_missing_without_create(tmp_path: Path) -> None:
    with pytest.raises(MemoryNotFoundError, match="pass create=True") as info:
        MemoryStore.open(tmp_path / "nothing")
    assert str(tmp_path / "nothing") in str(info.value)
    assert not (tmp_path / "nothing").exists()


def test_create_needs_dim(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="expected dim="):
        MemoryStore.open(tmp_path / "m", create=True)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dim": 0}, "dim expected a positive int"),
        ({"index": "ivf"}, "index expected 'auto', 'flat' or 'hnsw'"),
        ({"hnsw_min_rows": -1}, "hnsw_min_rows"),
        ({"max_text_chars": 0}, "max_text_chars"),
    ],
)
def test_open_rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        MemoryStore.open(tmp_path / "m", create=True, **{"dim": DIM, **kwargs})  # type: ignore[arg-type]


def test_open_with_other_dim_or_encoder_names_both(store_path: Path) -> None:
    MemoryStore.open(store_path, dim=DIM, encoder_id="enc-a", create=True).close()
    with pytest.raises(IncompatibleArtifactError, match=r"dim=16.*dim=32"):
        MemoryStore.open(store_path, dim=32)
    with pytest.raises(IncompatibleArtifactError, match=r"encoder_id='enc-a'.*encoder_id='enc-b'"):
        MemoryStore.open(store_path, encoder_id="enc-b", create=True)
    with MemoryStore.open(store_path, dim=DIM, encoder_id="enc-a") as store:  # the same values are fine
        assert store.encoder_id == "enc-a"


def test_max_text_chars_is_configurable(tmp_path: Path, rng: np.random.Generator) -> None:
    with MemoryStore.open(tmp_path / "m", dim=DIM, create=True, max_text_chars=50) as store:
        store.add(EditRecord(prompt="Q" * 50, target="A"), unit(rng, 1))
        with pytest.raises(InvalidEditError, match="at most 50 characters, received 51"):
            store.add(EditRecord(prompt="Q" * 51, target="A"), unit(rng, 1))


def test_closed_store_raises(store_path: Path, rng: np.random.Generator) -> None:
    store = MemoryStore.open(store_path, dim=DIM, create=True)
    store.close()
    calls: list[Callable[[], object]] = [
        lambda: store.add(record(0), unit(rng, 1)), lambda: store.search(unit(rng, 1)),
        lambda: store.get("x"), lambda: store.list(), lambda: store.count(), lambda: store.retract("x"),
        lambda: store.history("x"), lambda: store.update_manifest({}), lambda: store.namespaces(),
    ]  # fmt: skip
    for call in calls:
        with pytest.raises(StoreClosedError, match="open it again"):
            call()


def test_second_open_in_same_process_is_refused(store: MemoryStore, store_path: Path) -> None:
    with pytest.raises(StoreLockedError, match="this process"):
        MemoryStore.open(store_path)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )


def test_second_process_gets_store_locked_error_with_pid(store: MemoryStore, store_path: Path) -> None:
    import os

    result = _run(f"""
        from memory_store import MemoryStore, StoreLockedError
        try:
            MemoryStore.open({str(store_path)!r})
        except StoreLockedError as exc:
            print("LOCKED", exc)
    """)
    assert result.stdout.startswith("LOCKED"), result.stderr
    assert f"process {os.getpid()}" in result.stdout
    assert str(store_path) in result.stdout


def test_second_process_can_open_after_close(store_path: Path, rng: np.random.Generator) -> None:
    with MemoryStore.open(store_path, dim=DIM, create=True) as store:
        rec = store.add(record(0), unit(rng, 1))
    result = _run(f"""
        from memory_store import MemoryStore
        with MemoryStore.open({str(store_path)!r}) as store:
            print(store.get({rec.edit_id!r}).target)
    """)
    assert result.stdout.strip() == "Person 0", result.stderr


def test_importing_memory_store_does_not_import_torch() -> None:
    result = _run("""
        import sys
        import memory_store, memory_store.bench
        assert "memory_store.store" in sys.modules
        print("torch" in sys.modules, "transformers" in sys.modules)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_missing_database_is_corrupt_not_empty(store_path: Path, rng: np.random.Generator) -> None:
    with MemoryStore.open(store_path, dim=DIM, create=True) as store:
        store.add(record(0), unit(rng, 1))
    for name in ("edits.sqlite", "edits.sqlite-wal", "edits.sqlite-shm"):
        (store_path / name).unlink(missing_ok=True)
    with pytest.raises(CorruptStoreError, match=r"expected edits\.sqlite beside its manifest"):
        MemoryStore.open(store_path)


def test_newer_schema_or_format_is_incompatible(store_path: Path) -> None:
    MemoryStore.open(store_path, dim=DIM, create=True).close()
    conn = sqlite3.connect(store_path / "edits.sqlite")
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(IncompatibleArtifactError, match="expected schema version 1, received 99"):
        MemoryStore.open(store_path)
    manifest = json.loads((store_path / "manifest.json").read_text())
    (store_path / "manifest.json").write_text(json.dumps({**manifest, "format_version": 7}))
    with pytest.raises(IncompatibleArtifactError, match="format_version <= 1, received 7"):
        MemoryStore.open(store_path)


def test_broken_manifest_is_corrupt(store_path: Path) -> None:
    MemoryStore.open(store_path, dim=DIM, create=True).close()
    (store_path / "manifest.json").write_text("{not json")
    with pytest.raises(CorruptStoreError, match="readable JSON manifest"):
        MemoryStore.open(store_path)


def test_database_that_is_not_sqlite_is_corrupt(store_path: Path) -> None:
    MemoryStore.open(store_path, dim=DIM, create=True).close()
    (store_path / "edits.sqlite").write_bytes(b"definitely not SQLite" * 100)
    with pytest.raises(CorruptStoreError, match="expected an SQLite database"):
        MemoryStore.open(store_path)
    with pytest.raises(CorruptStoreError):  # the lock was released on the way out
        MemoryStore.open(store_path)


def test_key_blob_of_wrong_size_is_corrupt(store_path: Path, rng: np.random.Generator) -> None:
    with MemoryStore.open(store_path, dim=DIM, create=True) as store:
        store.add_many([record(i) for i in range(3)], unit(rng, 3))
    conn = sqlite3.connect(store_path / "edits.sqlite")
    conn.execute("UPDATE keys SET vec = ? WHERE kid = 2", (b"\x00" * 12,))
    conn.commit()
    conn.close()
    with pytest.raises(CorruptStoreError, match="blobs of 64 bytes"):
        MemoryStore.open(store_path)


def test_database_from_another_memory_is_refused(tmp_path: Path) -> None:
    MemoryStore.open(tmp_path / "a", dim=DIM, create=True).close()
    MemoryStore.open(tmp_path / "b", dim=DIM, create=True).close()
    (tmp_path / "a" / "edits.sqlite").replace(tmp_path / "b" / "edits.sqlite")
    with pytest.raises(CorruptStoreError, match="does not belong to its manifest"):
        MemoryStore.open(tmp_path / "b")


def test_half_created_memory_is_created_again(store_path: Path) -> None:
    store_path.mkdir()
    sqlite3.connect(store_path / "edits.sqlite").close()  # a crash before the manifest was written
    with MemoryStore.open(store_path, dim=DIM, create=True) as store:
        assert store.count() == 0


def test_database_without_manifest_is_not_overwritten(store_path: Path, rng: np.random.Generator) -> None:
    with MemoryStore.open(store_path, dim=DIM, create=True) as store:
        store.add(record(0), unit(rng, 1))
    (store_path / "manifest.json").unlink()
    with pytest.raises(CorruptStoreError, match=r"with edits but no manifest\.json"):
        MemoryStore.open(store_path, dim=DIM, create=True)
