"""Which requests of a partition were already answered: read back from ``results``.

Why: the rendezvous commits its input offsets only after the answers are durable, so a
crash between the two (or a rebalance) makes the new owner of a partition read some
requests again. Their answers are on ``<service>.results``, in the *same partition
number* (same key, same partition count), so the new owner reads that partition back
over a bounded lookback and skips those ids: at-least-once delivery plus this dedup
gives exactly one answer per request.

The lookback starts at the earlier of ``now - lookback_ms`` and the timestamp of the
first uncommitted request of the partition minus ``lookback_ms``: every answer to a
redelivered request was produced after that request was read, so this covers a crash
of any length as long as request timestamps are not older than their reading by more
than ``lookback_ms``.

The answers produced since the first uncommitted request of a partition (the ones a
redelivered request may have) are kept whole: their replies may have been lost (see
:mod:`modelstream.rendezvous.replies`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from modelstream.backplane.port import Backplane, Consumer
from modelstream.backplane.records import Record, TopicPartition
from modelstream.rendezvous.outcome import LATE_HEADER

# How much earlier than a request's timestamp its answer may be stamped and still be kept
# whole: the request is stamped by its producer's clock, the answer by the rendezvous'.
CLOCK_SKEW_MS = 5_000
NEVER = 2**63 - 1  # a timestamp no record reaches


def _ends(
    consumer: Consumer, topic: str, partitions: Iterable[int]
) -> tuple[set[TopicPartition], dict[int, int]]:
    """The assigned ones of ``partitions`` and every partition's end, with ``consumer``
    left at the end of each. The consumer must be moved to the ends anyway (so that it
    reads nothing of the other partitions), and its positions there are the ends: no
    second request for them (``Backplane.partitions``)."""
    assigned = consumer.assignment()
    wanted = {TopicPartition(topic, p) for p in partitions} & assigned
    consumer.seek_to_end(assigned)
    return wanted, {tp.partition: consumer.position(tp) for tp in assigned}


def records_since(
    backplane: Backplane, topic: str, since_ms: Mapping[int, int], timeout_s: float
) -> Iterator[Record]:
    """The records of the partitions of ``topic`` named in ``since_ms`` (partition ->
    timestamp), from the first stamped at or after its timestamp up to the partition's end
    as it was on the call. Reading is bounded by ``timeout_s``; the consumer is closed once
    the iterator is exhausted (or dropped)."""
    consumer = backplane.consumer([topic], start="earliest")
    try:
        wanted, ends = _ends(consumer, topic, since_ms)
        for tp in wanted:
            consumer.seek_to_time(since_ms[tp.partition], [tp])
        give_up = time.monotonic() + timeout_s
        while time.monotonic() < give_up and any(
            consumer.position(tp) < ends.get(tp.partition, 0) for tp in wanted
        ):
            for record in consumer.poll(max_records=1000, timeout=0.05):
                if record.partition in since_ms:
                    yield record
    finally:
        consumer.close()


def _first_timestamp(
    backplane: Backplane, topic: str, offsets: Mapping[int, int], timeout_s: float
) -> dict[int, int]:
    """The timestamp of the record at ``offsets[p]`` of each partition ``p``, where one exists."""
    found: dict[int, int] = {}
    consumer = backplane.consumer([topic], start="earliest")
    try:
        wanted, ends = _ends(consumer, topic, offsets)
        for tp in wanted:
            consumer.seek(tp, offsets[tp.partition])
        pending = {
            tp.partition for tp in wanted if offsets[tp.partition] < ends.get(tp.partition, 0)
        }
        give_up = time.monotonic() + timeout_s
        while pending and time.monotonic() < give_up:
            for record in consumer.poll(max_records=100, timeout=0.05):
                if record.partition in pending:
                    found[record.partition] = record.timestamp
                    pending.discard(record.partition)
                    consumer.seek_to_end([record.topic_partition])
    finally:
        consumer.close()
    return found


@dataclass(frozen=True)
class Answered:
    """What a read-back found: every answered id, and the recent answers whole (the
    containers are filled by :func:`read_answered`, then only read)."""

    ids: set[str] = field(default_factory=set)
    # request id -> its answer (the first, not late, record), for answers produced since
    # the first uncommitted request of their partition (less CLOCK_SKEW_MS)
    recent: dict[str, Record] = field(default_factory=dict)


def read_answered(
    backplane: Backplane,
    *,
    results_topic: str,
    requests_topic: str,
    partitions: Iterable[int],
    committed: Mapping[int, int | None],
    now_ms: int,
    lookback_ms: int,
    timeout_s: float = 10.0,
) -> Answered:
    """Request ids answered on ``results_topic`` in ``partitions`` since the lookback start,
    and the answers a redelivered request may have, whole.

    ``committed`` maps a partition to the group's committed offset on ``requests_topic``
    (``None`` where nothing is committed). Reading is bounded by ``timeout_s``.
    """
    found = Answered()
    wanted_parts = set(partitions)
    if not wanted_parts:
        return found
    starts = {p: now_ms - lookback_ms for p in wanted_parts}
    offsets = {p: c for p, c in committed.items() if c is not None and p in wanted_parts}
    firsts = _first_timestamp(backplane, requests_topic, offsets, timeout_s)
    for p, ts in firsts.items():
        starts[p] = min(starts[p], ts - lookback_ms)
    # Where nothing is committed, any answer may be one a redelivered request has; where
    # the commit is at the end, no request is redelivered.
    keep_from = {
        p: firsts[p] - CLOCK_SKEW_MS if p in firsts else 0 if committed.get(p) is None else NEVER
        for p in wanted_parts
    }
    for record in records_since(backplane, results_topic, starts, timeout_s):
        if record.key is None:
            continue
        rid = record.key.decode("utf-8", "replace")
        found.ids.add(rid)
        if record.timestamp >= keep_from[record.partition] and record.header(LATE_HEADER) is None:
            found.recent.setdefault(rid, record)
    return found
