"""The two locks of a memory: an exclusive per-process file lock and an in-process readers-writer lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from memory_store.errors import StoreLockedError

__all__ = ["ProcessLock", "ReadWriteLock"]


class ProcessLock:
    """An exclusive, non-blocking `flock` on `<memory>/lock` that records the holder's pid.

    The kernel drops a flock when its holder dies (even by SIGKILL), so a crash never leaves a stale
    lock behind. The lock belongs to an open file description, so a second open of the same memory
    inside one process is refused too: share the first MemoryStore instead.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        # "a+" creates the file without truncating it, so a refused opener can still read the holder's pid.
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            who = f"process {holder}" if holder else "another process"
            if holder == str(os.getpid()):
                who = f"this process (pid {holder}), through another MemoryStore"
            raise StoreLockedError(
                f"memory at {str(path.parent)!r} expected to be free, but it is held open by {who}; "
                "close that store first (one process at a time may open a memory)"
            ) from exc
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        """Give the lock up; the file stays, since deleting it would race with the next opener."""
        if self._handle.closed:
            return
        with contextlib.suppress(OSError):
            self._handle.truncate(0)
        fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
        self._handle.close()


class ReadWriteLock:
    """Many concurrent readers or one writer; waiting writers go first so searches cannot starve them.

    Not re-entrant: a thread must not take `read()` while it already holds either side.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writing or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()
