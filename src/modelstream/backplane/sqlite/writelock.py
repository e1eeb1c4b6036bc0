"""One writer at a time per database file, across threads *and* processes, handed over at once.

SQLite's own write lock is what keeps the files correct; this module only decides who
waits where. A writer that finds SQLite's lock taken waits in SQLite's busy handler,
which *sleeps* between retries (1, 2, 5, 10 ms and more), so two roles committing to one
file (every role commits its offsets to ``meta.db``) would often lose a millisecond or
more to a collision that lasted a few microseconds. Instead, every write transaction
(:func:`~modelstream.backplane.sqlite.schema.transaction`) first takes the file's
:class:`WriteLock`:

* a :class:`threading.Lock`, shared by the threads of one process;
* then an exclusive ``flock`` on a sidecar file ``<database>-writer``, shared by the
  processes; the kernel wakes the next waiter as soon as it is released.

So SQLite's busy handler only ever waits for writers that do not take these locks.

Contract and invariants:

* :func:`write_lock` returns the one :class:`WriteLock` of a path in this process, for
  as long as something holds it (each connection to the file does): the registry keeps
  it weakly, and a lock nobody holds closes its sidecar, so a process that opens many
  backplanes does not run out of descriptors.
* Holding the lock never affects correctness, only waiting: where the sidecar cannot be
  opened or locked (a read-only directory, a file system without ``flock``, Windows),
  the lock is the thread lock alone, and SQLite's busy handler decides between
  processes as before.
* A process that dies holding the lock releases it (the kernel drops the ``flock`` with
  the process), so a ``kill -9`` mid-commit never blocks the others. A process *stopped*
  (SIGSTOP, Ctrl-Z) inside a commit holds the file's other writers up until it resumes,
  as SQLite's own lock, which it also holds then, would.
* After ``fork`` the child gets fresh locks and reopens the sidecars: a lock held by a
  parent's thread at the fork is not held in the child, and the child's ``flock`` is on
  its own open file, not the parent's.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the thread lock alone
    fcntl = None  # type: ignore[assignment]

SUFFIX = "-writer"
"""The sidecar of ``<database>``: ``<database>-writer`` (empty; it only carries the lock)."""


class WriteLock:
    """The write lock of one database file in this process (see the module docstring)."""

    __slots__ = ("__weakref__", "_fd", "_sidecar", "_thread_lock", "_unusable")

    def __init__(self, database: Path) -> None:
        self._sidecar = str(database) + SUFFIX
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._unusable = fcntl is None

    def __enter__(self) -> WriteLock:
        self._thread_lock.acquire()
        try:
            fd = self._file()
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except OSError:  # e.g. ENOLCK: SQLite's own lock still decides
                    self._give_up()
        except BaseException:
            self._thread_lock.release()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        except OSError:
            self._give_up()
        finally:
            self._thread_lock.release()

    def _file(self) -> int | None:
        """The sidecar's descriptor, opened on first use (``None``: thread lock only)."""
        if self._fd is None and not self._unusable:
            try:
                self._fd = os.open(self._sidecar, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError:
                # Unwritable directory or deleted topic: no sidecar now; the next write
                # tries again (SQLite reports what is really wrong, if anything).
                return None
        return self._fd

    def _give_up(self) -> None:
        self._unusable = True
        self._close()

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __del__(self) -> None:
        self._close()

    def _after_fork(self) -> None:
        # Closing the inherited descriptor does not release a parent's flock (the parent
        # still has the open file); the child reopens its own on its next write.
        self._thread_lock = threading.Lock()
        self._close()


_registry_lock = threading.Lock()
_by_path: weakref.WeakValueDictionary[Path, WriteLock] = weakref.WeakValueDictionary()


def write_lock(path: Path) -> WriteLock:
    """The process-wide :class:`WriteLock` of the database file ``path``."""
    key = Path(path).absolute()
    with _registry_lock:
        lock = _by_path.get(key)
        if lock is None:
            lock = WriteLock(key)
            _by_path[key] = lock
        return lock


def _after_fork_in_child() -> None:
    global _registry_lock  # noqa: PLW0603 - a lock held by a parent's thread is dead here
    _registry_lock = threading.Lock()
    for lock in list(_by_path.values()):
        lock._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
