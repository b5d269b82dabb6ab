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
    """An exclusive, non-blocking `flock` on the memory directory itself, and the holder's pid in
    `<memory>/lock` (for the message a refused opener gets).

    The directory is locked, not the file: deleting `lock` cannot let a second process in while the
    first holds the memory. The kernel drops a flock when its holder dies (even by SIGKILL), so a crash
    never leaves a stale lock behind. The lock belongs to an open file description, so a second open of
    the same memory inside one process is refused too: share the first MemoryStore instead. `read_only`
    writes nothing (the pid file is left as it is): a memory on read-only storage can still be locked.
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self._fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(self._fd)
            holder = _holder(path)
            who = f"process {holder}" if holder else "another process"
            if holder == str(os.getpid()):
                who = f"this process (pid {holder}), through another MemoryStore"
            raise StoreLockedError(
                f"memory at {str(path.parent)!r} expected to be free, but it is held open by {who}; "
                "close that store first (one process at a time may open a memory)"
            ) from exc
        self._pid_written = False
        if not read_only:
            try:
                path.write_text(f"{os.getpid()}\n", encoding="utf-8")
                self._pid_written = True
            except OSError:
                self.release()
                raise

    def release(self) -> None:
        """Give the lock up; the file stays, since deleting it would race with the next opener."""
        if self._fd < 0:
            return
        if self._pid_written:
            with contextlib.suppress(OSError):
                self.path.write_text("", encoding="utf-8")
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = -1


def _holder(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""


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
