"""Waking waiting consumers of the SQLite engine.

:class:`Wakeups` is shared by every :class:`~modelstream.backplane.sqlite.engine.SqliteBackplane`
object of one process on one directory (looked up with :func:`wakeups_for`), so two
backplane objects on the same directory see each other's records at once too. (Writers
are serialised by :mod:`modelstream.backplane.sqlite.writelock`.)

* :class:`Wakeups` — a consumer registers a :class:`threading.Event` for the topic
  files it reads, for as long as it is open. A producer of this process calls
  :meth:`Wakeups.changed` right after its commit, which sets the events of that file's
  consumers at once (and brings the watcher's view of the file up to date, so the
  watcher does not wake them a second time), and rings the other processes' doorbells
  (:mod:`modelstream.backplane.sqlite.doorbell`). Commits by *other* processes are
  noticed by ONE watcher thread per directory, only while some file is watched: it
  sleeps on this process's doorbell and wakes the waiters of each file rung. As a
  safety net it also compares ``PRAGMA data_version`` of the watched files: every
  :data:`FALLBACK_S` while a ring can be lost, every :data:`FALLBACK_IDLE_S` otherwise
  (:func:`fallback_interval`). Where doorbells are unavailable it polls that way every
  millisecond (every 5 ms once nothing has changed for 0.2 s). So the cost of waiting
  does not grow with the number of consumer threads, a record is seen without any
  polling delay, and an idle process wakes ten times a second, not a hundred.

Invariant (no lost wake-up): a waiter sets up its event *before* its last look at the
records; a commit after that look either sets the event (local producer) or changes a
``data_version`` the watcher compares with a value read before it (other processes).
A doorbell only makes that sooner: a lost ring costs at most :data:`FALLBACK_S` in the
two cases where rings are lost (see :mod:`~modelstream.backplane.sqlite.doorbell`):

* a writer has not seen this process's bell, or what it now advertises, yet: it
  re-lists within ``LOOK_S`` of a change of the directory, at most ``RELIST_S`` after
  it: for :data:`FRESH_S` after it advertises, the watcher checks fast;
* the bell's pipe is full because the watcher is behind: that needs rings, so for
  :data:`IDLE_AFTER_S` after the last ring heard, it checks fast too.

Otherwise (a writer's error writing to the pipe) a ring costs at most
:data:`FALLBACK_IDLE_S`.
"""

from __future__ import annotations

import contextlib
import logging
import select
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from modelstream.backplane.sqlite.doorbell import Doorbell

log = logging.getLogger(__name__)

FAST_S = 0.001  # watcher cadence while files change
SLOW_S = 0.005  # once nothing changed for IDLE_AFTER_S
IDLE_AFTER_S = 0.2
FALLBACK_S = 0.01  # data_version checks while a ring can be lost (module docstring)
FALLBACK_IDLE_S = 0.1  # and otherwise, while a doorbell wakes the watcher
FRESH_S = 2.0  # after advertising: longer than a writer's RELIST_S + LOOK_S
DOORBELLS = ".doorbells"  # under the topics directory

_registry_lock = threading.Lock()
_wakeups: dict[Path, Wakeups] = {}


def wakeups_for(directory: Path) -> Wakeups:
    """The process-wide :class:`Wakeups` of the topic files under ``directory``."""
    key = Path(directory).absolute()
    with _registry_lock:
        found = _wakeups.get(key)
        if found is None:
            found = _wakeups[key] = Wakeups(key)
        return found


def fallback_interval(now: float, last_ring: float, advertised: float) -> float:
    """How long the watcher may go without comparing ``data_version``: :data:`FALLBACK_S`
    within :data:`IDLE_AFTER_S` of the last ring heard or :data:`FRESH_S` of the last
    advertisement (when a ring can be lost), else :data:`FALLBACK_IDLE_S`."""
    if now - last_ring < IDLE_AFTER_S or now - advertised < FRESH_S:
        return FALLBACK_S
    return FALLBACK_IDLE_S


class _Watched:
    """A file somebody waits on: its waiters and the watcher's view of it."""

    __slots__ = ("conn", "version", "waiters")

    def __init__(self) -> None:
        self.waiters: dict[threading.Event, int] = {}  # event -> how many waits use it
        self.conn: sqlite3.Connection | None = None
        self.version = -1


class Wakeups:
    """Events of consumers waiting for records of the topic files in one directory."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._lock = threading.Lock()
        self._files: dict[str, _Watched] = {}
        self._someone_waits = threading.Event()
        self._thread: threading.Thread | None = None
        self.doorbell = Doorbell(directory / DOORBELLS)
        self._advertised = time.monotonic()  # when writers may not know our files yet
        self.checks = 0  # data_version comparisons by the watcher (a measure of idle cost)

    def changed(self, file: str) -> None:
        """Wake whoever waits on ``file``, here and in other processes (call after a
        commit to it)."""
        self.doorbell.ring(file)
        watched = self._files.get(file)  # a dict read is atomic; skip the lock when idle
        if watched is None or not watched.waiters:
            return
        with self._lock:
            events = list(watched.waiters)
            # Catch the watcher's view up first: this commit (and any before it) wakes
            # everyone now, so the watcher must not wake them all again a moment later.
            if watched.conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    watched.version = watched.conn.execute("PRAGMA data_version").fetchone()[0]
        for event in events:
            # Event.set() notifies (a system call, under the interpreter lock) even when
            # the event is already set; a set event needs nothing more.
            if not event.is_set():
                event.set()

    def watch(self, files: Iterable[str], event: threading.Event) -> None:
        """Set ``event`` whenever one of ``files`` changes, until :meth:`unwatch`.

        The waiter clears ``event`` before each look at the records and waits on it
        after (see the invariant above); a spurious wake-up only costs one more look.
        """
        with self._lock:
            before = len(self._files)
            for file in files:
                watched = self._files.get(file)
                if watched is None:
                    watched = self._files[file] = _Watched()
                watched.waiters[event] = watched.waiters.get(event, 0) + 1
            if self._thread is None:
                # The bell exists before the files are advertised and before the waiter's
                # look at the records (see the module's invariant).
                bell = self.doorbell.listen()
                self._thread = threading.Thread(
                    target=self._watch_loop,
                    args=(bell,),
                    name=f"sqlite-watcher:{self._dir.name}",
                    daemon=True,
                )
                self._thread.start()
            if len(self._files) != before:
                self._advertise()
        self._someone_waits.set()

    def unwatch(self, files: Iterable[str], event: threading.Event) -> None:
        """Undo one :meth:`watch` of ``files`` with ``event``."""
        closing: list[sqlite3.Connection] = []
        with self._lock:
            before = len(self._files)
            for file in files:
                watched = self._files.get(file)
                if watched is None:
                    continue
                count = watched.waiters.get(event, 0) - 1
                if count > 0:
                    watched.waiters[event] = count
                else:
                    watched.waiters.pop(event, None)
                if not watched.waiters:
                    # Forget the file: it may be deleted; a later watcher opens it anew.
                    del self._files[file]
                    if watched.conn is not None:
                        closing.append(watched.conn)
            if not self._files:
                self._someone_waits.clear()
            if len(self._files) != before:
                self._advertise()
        for conn in closing:
            conn.close()

    def _advertise(self) -> None:
        """Tell writers what this process now waits on (call under the lock); until they
        have re-listed, a ring can be lost, so the watcher checks fast for a while."""
        self.doorbell.advertise(frozenset(self._files))
        self._advertised = time.monotonic()

    # -- the watcher thread -------------------------------------------------------------

    def _watch_loop(self, bell: int | None) -> None:
        try:
            if bell is None:
                self._poll_loop()
            else:
                self._bell_loop(bell)
        except BaseException:
            log.exception("the sqlite watcher of %s failed; a new one starts on demand", self._dir)
            with self._lock:
                self.doorbell.close()
                self._thread = None
            raise

    def _idle_end(self) -> bool:
        """Wait up to a second for a watcher; whether the thread should end (nobody did).

        The bell is closed under the lock, before a new thread may be started by
        :meth:`watch`, so two watcher threads never share one bell.
        """
        if self._someone_waits.wait(1.0):
            return False
        with self._lock:
            if not self._files:
                self.doorbell.close()
                self._thread = None
                return True
        return False

    def _poll_loop(self) -> None:
        last_change = time.monotonic()
        while True:
            if not self._someone_waits.is_set() and self._idle_end():
                return
            if self._check():
                last_change = time.monotonic()
            idle = time.monotonic() - last_change > IDLE_AFTER_S
            time.sleep(SLOW_S if idle else FAST_S)

    def _bell_loop(self, bell: int) -> None:
        next_check = 0.0
        last_ring = -IDLE_AFTER_S
        while True:
            if not self._someone_waits.is_set() and self._idle_end():
                return
            now = time.monotonic()
            if now >= next_check:
                self._check()  # the safety net: rings lost (see the module docstring)
                next_check = now + fallback_interval(now, last_ring, self._advertised)
            readable, _, _ = select.select([bell], [], [], max(0.0, next_check - now))
            if readable:
                self._ring(self.doorbell.heard())
                last_ring = time.monotonic()
                next_check = min(next_check, last_ring + FALLBACK_S)

    def _ring(self, files: set[str]) -> None:
        """Wake the waiters of ``files`` (named by other processes' rings)."""
        with self._lock:
            events = {e for f in files if (w := self._files.get(f)) for e in w.waiters}
        for event in events:
            if not event.is_set():
                event.set()

    def _check(self) -> bool:
        """Compare each watched file's ``data_version``; wake the waiters of changed ones.

        Runs under the lock so that :meth:`unwatch` never closes a connection in use.
        """
        woke = False
        with self._lock:
            self.checks += 1
            for file, watched in self._files.items():
                try:
                    if watched.conn is None:
                        # mode=rw: never create the file of a topic deleted meanwhile.
                        uri = f"{(self._dir / file).as_uri()}?mode=rw"
                        watched.conn = sqlite3.connect(
                            uri, uri=True, isolation_level=None, check_same_thread=False
                        )
                    version = watched.conn.execute("PRAGMA data_version").fetchone()[0]
                except sqlite3.Error:
                    continue  # deleted meanwhile: the waiter's own timeout covers it
                if version != watched.version:
                    # The first read counts as a change: one spurious look, never a miss.
                    watched.version = version
                    woke = True
                    for event in watched.waiters:
                        event.set()
        return woke
