"""The clock port: wall-clock time in milliseconds, injectable so time-based logic is testable.

Roles that decide by time (the rendezvous's waits and deadlines, watermarks) take a
:class:`Clock` instead of calling :func:`time.time`, so a test can drive them with a
:class:`ManualClock` and assert exact outcomes without sleeping. Times are integer
milliseconds since the Unix epoch, the unit of every timestamp on the wire.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """A source of the current wall-clock time; safe to call from any thread."""

    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass (a manual clock advances instead of blocking)."""
        ...


class SystemClock:
    """The machine's wall clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that moves only when told to (tests). Thread-safe; never goes backward."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        with self._lock:
            return self._now

    def advance(self, ms: int) -> int:
        """Move forward by ``ms`` (>= 0) and return the new time."""
        if ms < 0:
            raise ValueError("a ManualClock cannot go backward; advance by ms >= 0")
        with self._lock:
            self._now += ms
            return self._now

    def set(self, now_ms: int) -> None:
        """Jump to ``now_ms``; a time in the past is ignored (the clock never goes backward)."""
        with self._lock:
            self._now = max(self._now, now_ms)

    def sleep(self, seconds: float) -> None:
        """Advance by ``seconds`` instead of blocking."""
        self.advance(max(0, round(seconds * 1000)))
