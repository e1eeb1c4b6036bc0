"""When a consumer loop commits its offsets: :class:`CommitCadence`.

Why: a commit is a write to the backplane (a SQLite transaction on ``meta.db``, a round
trip to the group coordinator on Kafka). A loop that commits after every batch pays
that once per batch, and under a steady trickle of load a batch holds one or two records:
the commit is then a large share of the work it records (at batch 1, 16% of a scorer's
CPU on SQLite and 32% on Kafka; ``benchmarks/cadence.py``). The scorers and the
rendezvous therefore commit at most every ``interval_ms`` while records flow, and at once
when a poll comes back empty (so an idle loop's committed offsets are current) or when
they stop.

Contract: the cadence only decides *when*. What is committed is still only ever what is
durable (scores produced, answers produced), so delivery stays at-least-once; a crash
re-reads at most about ``interval_ms`` of records more than a commit per batch would, and
the readers already dedupe a re-read (the rendezvous answers a request once, whatever
scores are re-sent). ``interval_ms`` of 0 commits after every batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CommitCadence:
    """Says whether a loop should commit now. Not thread-safe: one loop owns one."""

    def __init__(self, interval_ms: int, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = max(0, interval_ms) / 1000
        self._monotonic = monotonic
        self._last = monotonic()

    def due(self, *, idle: bool) -> bool:
        """Whether to commit now: when ``idle`` (the poll brought nothing), or when the last
        commit is ``interval_ms`` old."""
        return idle or self._monotonic() - self._last >= self.interval_s

    def committed(self) -> None:
        """Record that the loop has just committed (the interval restarts)."""
        self._last = self._monotonic()
