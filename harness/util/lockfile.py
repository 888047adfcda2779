"""Exclusive, non-blocking locks on files that go away when released: a run's command lock (under the data home)
and its run directory's lock, so finished runs leave no lock files behind.

Removing a lock file is safe only with a check on taking it: a process that opened the file just before its holder
removed it would lock a file no longer at that path while a third process locks a new one. So `take` locks the file
it opened and keeps it only if that file is still the one at the path (else it opens the path again); `release`
removes the file while still holding it."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path


class HeldLock:
    """A lock `take` got: `release()` (or `close()`) removes its file and lets it go."""

    def __init__(self, path: Path, handle):
        self.path, self._handle = path, handle

    def fileno(self) -> int:
        return self._handle.fileno()

    def release(self) -> None:
        if self._handle is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while held: whoever opens the path next makes a new file
        except OSError:
            pass  # a folder that keeps its files (read-only since): the file stays, and still works as a lock
        finally:
            self._handle.close()
            self._handle = None

    close = release


def take(path) -> HeldLock:
    """The lock on `path` (created if missing); BlockingIOError when another process holds it."""
    path = Path(path)
    while True:
        handle = open(path, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise
        try:
            current = os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
        except FileNotFoundError:
            current = False
        if current:
            return HeldLock(path, handle)
        handle.close()  # its holder removed it after this process opened it: lock the file now at the path
