"""Polling helpers for backplane tests: every wait is bounded, nothing sleeps blindly."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence

from modelstream.backplane.port import Consumer
from modelstream.backplane.records import Record

# Generous: a Kafka group join takes half the session timeout, CI machines are slow.
WAIT_S = 30.0


def unique(prefix: str) -> str:
    """A topic or group name no other test (or earlier run on a shared broker) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def poll_until(
    consumers: Sequence[Consumer],
    done: Callable[[list[list[Record]]], bool],
    timeout: float = WAIT_S,
) -> list[list[Record]]:
    """Poll every consumer in turn until ``done(records per consumer)`` or the timeout.

    Returns the records each consumer received (the caller asserts on them).
    """
    got: list[list[Record]] = [[] for _ in consumers]
    deadline = time.monotonic() + timeout
    while not done(got) and time.monotonic() < deadline:
        for index, consumer in enumerate(consumers):
            got[index].extend(consumer.poll(max_records=1000, timeout=0.05))
    return got


def collect(consumer: Consumer, count: int, timeout: float = WAIT_S) -> list[Record]:
    """At least ``count`` records from ``consumer``, or fewer if ``timeout`` passes first."""
    return poll_until([consumer], lambda got: len(got[0]) >= count, timeout)[0]


def settle(consumers: Sequence[Consumer], partitions: int, timeout: float = WAIT_S) -> None:
    """Poll until the consumers' assignments are disjoint, non-empty and cover everything.

    Records received while settling are dropped: callers produce only afterwards.
    """

    def stable(_: list[list[Record]]) -> bool:
        sets = [c.assignment() for c in consumers]
        union = frozenset().union(*sets)
        return all(sets) and len(union) == partitions == sum(len(s) for s in sets)

    poll_until(consumers, stable, timeout)
    assert stable([]), [sorted(c.assignment(), key=str) for c in consumers]
