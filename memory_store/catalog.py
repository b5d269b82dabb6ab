"""In-memory status and namespace of every record and the record of every key, as arrays for filtering."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from memory_store.records import STATUSES, Status

__all__ = ["ACTIVE", "Catalog", "RecordGroup"]

ACTIVE = 0  # == STATUSES.index("active")
RecordGroup = tuple[str, str, np.ndarray]  # (namespace, status, rids): how records are loaded in bulk
_CODE: dict[str, int] = {status: code for code, status in enumerate(STATUSES)}


def _grown(array: np.ndarray, size: int, fill: int) -> np.ndarray:
    """`array` itself when it already has `size` slots, else a copy at least twice as large."""
    if size <= len(array):
        return array
    out = np.full(max(size, 2 * len(array)), fill, dtype=array.dtype)
    out[: len(array)] = array
    return out


class Catalog:
    """Mirror of the columns search filters on: rid -> (status, namespace, number of keys), kid -> rid.

    rids and kids are small dense integers assigned by SQLite, so plain arrays indexed by them replace
    dicts (a million records cost a few megabytes and filter in one vectorised step). The store changes
    it only after the SQLite transaction that made the change has committed.
    """

    def __init__(self) -> None:
        self._key_rid = np.zeros(1024, np.int64)  # kid -> rid; 0 = no such key
        self._status = np.full(1024, -1, np.int8)  # rid -> status code; -1 = no such record
        self._namespace = np.full(1024, -1, np.int32)  # rid -> namespace code
        self._num_keys = np.zeros(1024, np.int32)  # rid -> number of key rows
        self._codes: dict[str, int] = {}
        self._active_keys = np.zeros(16, np.int64)  # namespace code -> keys of active records
        self.num_records = 0
        self.num_keys = 0

    def _code(self, namespace: str) -> int:
        code = self._codes.get(namespace)
        if code is None:
            code = self._codes[namespace] = len(self._codes)
            self._active_keys = _grown(self._active_keys, code + 1, 0)
        return code

    def add(self, groups: Sequence[RecordGroup], kids: np.ndarray, key_rids: np.ndarray) -> None:
        """Register records, given as (namespace, status, rids) groups, and their keys (kid -> rid)."""
        for namespace, status, rids in groups:
            if not len(rids):
                continue
            top = int(rids.max()) + 1
            self._status = _grown(self._status, top, -1)
            self._namespace = _grown(self._namespace, top, -1)
            self._num_keys = _grown(self._num_keys, top, 0)
            self._status[rids] = _CODE[status]
            self._namespace[rids] = self._code(namespace)
            self.num_records += len(rids)
        if len(kids):
            self._key_rid = _grown(self._key_rid, int(kids.max()) + 1, 0)
            self._key_rid[kids] = key_rids
            np.add.at(self._num_keys, key_rids, 1)
            self.num_keys += len(kids)
            active = key_rids[self._status[key_rids] == ACTIVE]
            np.add.at(self._active_keys, self._namespace[active], 1)

    def status(self, rid: int) -> Status:
        return STATUSES[int(self._status[rid])]

    def set_status(self, rid: int, status: Status) -> None:
        was_active = self._status[rid] == ACTIVE
        self._status[rid] = _CODE[status]
        delta = int(status == "active") - int(was_active)
        self._active_keys[self._namespace[rid]] += delta * int(self._num_keys[rid])

    def codes(self, namespaces: Sequence[str] | None) -> np.ndarray | None:
        """Codes of the namespaces that exist (None = every namespace); unknown names simply match nothing."""
        if namespaces is None:
            return None
        return np.array(sorted({self._codes[ns] for ns in namespaces if ns in self._codes}), dtype=np.int32)

    def active_keys(self, codes: np.ndarray | None) -> int:
        """Number of keys that belong to active records in these namespaces."""
        counts = self._active_keys[: len(self._codes)]
        return int(counts.sum() if codes is None else counts[codes].sum())

    def rids(self, kids: np.ndarray) -> np.ndarray:
        rids: np.ndarray = self._key_rid[kids]
        return rids

    def qualify(self, rids: np.ndarray, codes: np.ndarray | None) -> np.ndarray:
        """Boolean mask: which of these records are active and inside the namespaces."""
        mask: np.ndarray = self._status[rids] == ACTIVE
        if codes is not None:
            if len(codes) == 1:
                mask &= self._namespace[rids] == codes[0]
            else:  # a lookup table beats np.isin on the short arrays of a search
                allowed = np.zeros(len(self._codes), dtype=bool)
                allowed[codes] = True
                mask &= allowed[self._namespace[rids]]
        return mask

    def states(self, rids: np.ndarray) -> tuple[list[str], list[str]]:
        """(status, namespace) of each record, for comparing with SQLite."""
        names = {code: ns for ns, code in self._codes.items()}
        statuses = [STATUSES[code] if code >= 0 else "?" for code in self._status[rids].tolist()]
        return statuses, [names.get(code, "?") for code in self._namespace[rids].tolist()]

    def active_keys_by_namespace(self) -> dict[str, int]:
        return {ns: int(self._active_keys[code]) for ns, code in self._codes.items()}

    def check(self, kids: np.ndarray) -> str | None:
        """The first inconsistency between these records and the indexed `kids`, or None."""
        if len(kids) != self.num_keys:
            return f"index holds {len(kids)} keys, SQLite {self.num_keys}"
        rids = self._key_rid[kids]
        if len(rids) and (rids.min() <= 0 or (self._status[rids] < 0).any()):
            return "a key belongs to no record"
        known = np.flatnonzero(self._status >= 0)
        if (self._num_keys[known] <= 0).any():
            return "a record has no key vector"
        return None
