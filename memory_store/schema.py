"""The tables of edits.sqlite (records, key vectors as float32 blobs, history events) and how a records row
becomes an EditRecord."""

from __future__ import annotations

import json
from collections.abc import Sequence

from memory_store.records import EditRecord

__all__ = ["COLUMNS", "SCHEMA", "SCHEMA_VERSION", "record_of_row"]

SCHEMA_VERSION = 1
# Records are never deleted (retract only changes status), so rids and kids only grow; the index cache relies
# on that to tell which keys it already covers.
SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    rid INTEGER PRIMARY KEY,
    edit_id TEXT NOT NULL UNIQUE,
    namespace TEXT NOT NULL,
    prompt TEXT NOT NULL,
    target TEXT NOT NULL,
    subject TEXT,
    statement TEXT NOT NULL,
    created_at REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'superseded', 'retracted')),
    supersedes TEXT,
    meta TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_namespace_status ON records (namespace, status);
CREATE TABLE IF NOT EXISTS keys (
    kid INTEGER PRIMARY KEY,
    rid INTEGER NOT NULL REFERENCES records (rid),
    vec BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS keys_rid ON keys (rid);
CREATE TABLE IF NOT EXISTS events (
    eid INTEGER PRIMARY KEY,
    rid INTEGER NOT NULL REFERENCES records (rid),
    kind TEXT NOT NULL CHECK (kind IN ('add', 'supersede', 'retract', 'restore')),
    at REAL NOT NULL,
    reason TEXT NOT NULL,
    other_id TEXT
);
CREATE INDEX IF NOT EXISTS events_rid ON events (rid);
"""
COLUMNS = "edit_id, namespace, prompt, target, subject, statement, created_at, status, supersedes, meta"


def record_of_row(row: Sequence[object]) -> EditRecord:
    edit_id, namespace, prompt, target, subject, statement, created_at, status, supersedes, meta = row
    return EditRecord(
        prompt=str(prompt),
        target=str(target),
        subject=None if subject is None else str(subject),
        statement=str(statement),
        namespace=str(namespace),
        edit_id=str(edit_id),
        created_at=float(created_at),  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        supersedes=None if supersedes is None else str(supersedes),
        meta=json.loads(str(meta)),
    )
