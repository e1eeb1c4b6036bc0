"""Doorbells: a commit in one process wakes the waiters of every other process at once.

Without them, a process learns of another process's commit by polling each watched file's
``PRAGMA data_version``, which costs CPU at every tick and adds up to a tick of latency
to every hop between roles. With them, polling is only the safety net.

Each process that waits on files of a directory owns one *bell*: a named pipe (FIFO) in
``<directory>/.doorbells/``, named ``<pid>-<random>`` so a name is never reused, and
advertises the files it waits on in ``<name>.watch`` beside it (one per line). A
producer, right after its commit, writes the changed file's name (one line) to the bells
of the other processes that advertise that file; the owner's watcher thread wakes that
file's waiters. Ringing only the interested keeps a commit from waking every process of
the directory (a scorer's scores would otherwise wake the gateway, for nothing).

Contract and invariants:

* A bell is visible under its final name only while its owner holds it open for reading:
  it is made under a temporary name, opened, then renamed into place; it is unlinked
  before it is closed. So a writer that finds no reader (``ENXIO``) or a broken pipe
  (``EPIPE``) knows the owner is gone (killed, even with SIGKILL) and removes the bell.
* Ringing never blocks and never raises: a full pipe (its owner is behind, with wake-ups
  pending anyway) drops the line, and any error only costs the owner the latency of its
  fallback poll. Lost rings therefore delay a waiter, never lose a record: the watcher
  still compares ``data_version`` (every 10 ms while rings can be lost, every 100 ms
  otherwise: :func:`~modelstream.backplane.sqlite.wakeup.fallback_interval`).
* Writers look at the directory's ``mtime`` at most every :data:`LOOK_S` and re-list
  the bells (and re-read what they advertise) when it changed, or at least every
  :data:`RELIST_S`: a bell made, or a file advertised, after a writer's last look is
  rung within ``LOOK_S`` (its owner's fallback poll covers the gap). A bell without an
  advertisement yet is rung for every file.
* Where named pipes are unavailable (Windows, some network file systems) :meth:`listen`
  returns ``None`` and the watcher polls as before.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import threading
import time
import uuid
import weakref
from pathlib import Path

RELIST_S = 1.0  # writers re-list the bells at least this often
LOOK_S = 0.02  # and look whether the directory changed at most this often
LINE_MAX = 4096  # PIPE_BUF on Linux: a write up to this size is never interleaved
ADVERTISED = ".watch"  # suffix of the file beside a bell naming what its owner waits on
EVERYTHING = None  # a peer that has not advertised yet: ring it for every file

_every_doorbell: weakref.WeakSet[Doorbell] = weakref.WeakSet()


def _after_fork() -> None:
    for doorbell in list(_every_doorbell):
        doorbell._forget_parent()


if hasattr(os, "register_at_fork"):
    # Once per process, not a pid check per ring: a forked child must not ring or read
    # through its parent's descriptors.
    os.register_at_fork(after_in_child=_after_fork)


class Doorbell:
    """The bells of one directory, as this process rings them and owns its own."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._lock = threading.Lock()
        # bell name -> (write descriptor, the files its owner waits on or EVERYTHING)
        self._peers: dict[str, tuple[int, frozenset[str] | None]] = {}
        self._listed_mtime = -1
        self._listed_at = 0.0
        self._look_at = 0.0
        self._own: str | None = None
        self._read_fd: int | None = None
        self._keep_fd: int | None = None  # our own writer: reads never see end-of-file
        self._buffer = b""
        self._exit_hook = False
        _every_doorbell.add(self)

    # -- ringing --------------------------------------------------------------------------

    def ring(self, file: str) -> None:
        """Tell every other process's bell that ``file`` changed (best effort)."""
        line = file.encode() + b"\n"
        if len(line) > LINE_MAX:
            return
        with self._lock:
            self._relist()
            gone = []
            for name, (fd, files) in self._peers.items():
                if files is not EVERYTHING and file not in files:
                    continue
                try:
                    os.write(fd, line)
                except BlockingIOError:
                    pass  # its pipe is full: the owner has wake-ups to read already
                except OSError:
                    gone.append(name)  # EPIPE: its owner died
            for name in gone:
                self._drop(name, unlink=True)

    def _relist(self) -> None:
        now = time.monotonic()
        if now < self._look_at:
            return  # a stat per ring would cost more than the ring: a bell made since
            # is rung within LOOK_S, and its owner's fallback poll covers the gap
        self._look_at = now + LOOK_S
        try:
            stat = os.stat(self._dir)
        except OSError:
            for name in list(self._peers):  # the directory is gone, and its bells
                self._drop(name, unlink=False)
            return
        if stat.st_mtime_ns == self._listed_mtime and now - self._listed_at < RELIST_S:
            return
        self._listed_mtime, self._listed_at = stat.st_mtime_ns, now
        try:
            entries = os.listdir(self._dir)
        except OSError:
            return
        names = {n for n in entries if not n.startswith(".") and not n.endswith(ADVERTISED)}
        names.discard(self._own or "")
        for name in [n for n in self._peers if n not in names]:
            self._drop(name, unlink=False)
        for name in names:
            held = self._peers.get(name)
            if held is None:
                try:
                    fd = os.open(self._dir / name, os.O_WRONLY | os.O_NONBLOCK)
                except OSError as error:
                    if error.errno == errno.ENXIO:  # a bell nobody reads: its owner died
                        self._remove(name)
                    continue
            else:
                fd = held[0]
            self._peers[name] = (fd, self._advertised(name))

    def _advertised(self, name: str) -> frozenset[str] | None:
        try:
            text = (self._dir / f"{name}{ADVERTISED}").read_text("utf-8")
        except OSError:
            return EVERYTHING
        return frozenset(line for line in text.split("\n") if line)

    def _remove(self, name: str) -> None:
        for path in (self._dir / name, self._dir / f"{name}{ADVERTISED}"):
            with contextlib.suppress(OSError):
                os.unlink(path)

    def _drop(self, name: str, *, unlink: bool) -> None:
        held = self._peers.pop(name, None)
        if held is not None:
            with contextlib.suppress(OSError):
                os.close(held[0])
        if unlink:
            self._remove(name)

    def _forget_parent(self) -> None:
        """In a forked child: forget the parent's descriptors and bell (they are its)."""
        self._lock = threading.Lock()  # the parent's may have been held at the fork
        self._peers.clear()
        self._own = self._read_fd = self._keep_fd = None
        self._buffer = b""
        self._listed_mtime = -1
        self._look_at = 0.0

    # -- owning a bell --------------------------------------------------------------------

    def listen(self) -> int | None:
        """Make this process's bell; the descriptor to wait on, or ``None`` (unsupported).

        Idempotent while listening. The caller reads it with :meth:`heard` and ends with
        :meth:`close`.
        """
        with self._lock:
            if self._read_fd is not None:
                return self._read_fd
            if not hasattr(os, "mkfifo"):
                return None
            name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
            staging = self._dir / f".{name}"
            try:
                self._dir.mkdir(parents=True, exist_ok=True)
                os.mkfifo(staging, 0o600)
                read_fd = os.open(staging, os.O_RDONLY | os.O_NONBLOCK)
                keep_fd = os.open(staging, os.O_WRONLY | os.O_NONBLOCK)
                os.replace(staging, self._dir / name)  # visible only once it is read
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(staging)
                return None
            self._own, self._read_fd, self._keep_fd = name, read_fd, keep_fd
            self._peers.pop(name, None)
            if not self._exit_hook:
                atexit.register(self.close)  # a clean exit leaves no bell behind
                self._exit_hook = True
            return read_fd

    def advertise(self, files: frozenset[str]) -> None:
        """Tell writers that this process waits on ``files`` (replacing what it said)."""
        with self._lock:
            if self._own is None:
                return
            final = self._dir / f"{self._own}{ADVERTISED}"
            staging = self._dir / f".{self._own}{ADVERTISED}"
            try:
                staging.write_text("".join(f"{f}\n" for f in sorted(files)), "utf-8")
                os.replace(staging, final)  # atomic: a writer reads all of it or the old
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(final)  # no advertisement: writers ring it for everything

    def heard(self) -> set[str]:
        """The files named by every ring waiting on this process's bell (never blocks)."""
        fd = self._read_fd
        if fd is None:
            return set()
        chunks = [self._buffer]
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # BlockingIOError: drained; anything else: the fallback covers
                break
            if not chunk:
                break
            chunks.append(chunk)
        data = b"".join(chunks)
        complete, _, self._buffer = data.rpartition(b"\n")
        return {line.decode("utf-8", "replace") for line in complete.split(b"\n") if line}

    def close(self) -> None:
        """Stop owning a bell: unlink it first, so no writer mistakes it for a live one."""
        with self._lock:
            if self._own is not None:
                self._remove(self._own)
            for fd in (self._read_fd, self._keep_fd):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._own = self._read_fd = self._keep_fd = None
            self._buffer = b""
