"""One produce call of the Kafka engine: where each record goes, and where it landed.

The engine hands librdkafka a whole batch with one delivery callback, instead of a
closure per record, and matches the reports to the records afterwards. That works
because of two invariants:

* every record is given an explicit partition before it is produced (:func:`place`), so
  the engine knows which records went to each partition, in input order;
* librdkafka reports the records of one partition in the order they were produced, and
  the idempotent producer keeps that order through retries; so the n-th report from a
  partition belongs to the n-th record this call sent there (:func:`delivered`).

Both steps are written for speed, as they run for every record produced: placement of
keyed records is vectorised (:func:`~modelstream.backplane.partitioner.partitions_for`)
and the matching is two stable sorts done in C.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from itertools import repeat
from typing import cast

from confluent_kafka import Message

from modelstream.backplane.partitioner import missing_partition, partitions_for
from modelstream.backplane.records import Delivered, OutRecord
from modelstream.errors import BackplaneError

# The partition of a delivered message, as a C-level sort key.
_PARTITION = cast("Callable[[Message], int]", Message.partition)
_OFFSET = cast("Callable[[Message], int | None]", Message.offset)


def _partition_offset(message: Message) -> tuple[int, int]:
    return _PARTITION(message), _OFFSET(message) or 0


def place(
    topic: str, records: Sequence[OutRecord], count: int, unkeyed: Iterator[int]
) -> list[int]:
    """The partition of each of ``records`` among ``count``, checked before any is sent.

    An explicit partition is kept (``ConfigurationError`` if ``topic`` lacks it); a keyed
    record goes where Kafka's murmur2 partitioner puts its key; unkeyed records are dealt
    round-robin, starting at the partition ``next(unkeyed)`` names.
    """
    keys = [out.key for out in records]
    explicit = [out.partition for out in records]
    n = len(records)
    if explicit.count(None) == n:
        if None not in keys:  # the common case: a batch of keyed records
            return partitions_for(cast("list[bytes]", keys), count)
        if keys.count(None) == n:
            start = next(unkeyed)
            return [(start + i) % count for i in range(n)]
    if None not in explicit:  # every record placed by its producer (scores, results)
        placed = cast("list[int]", explicit)
        if not 0 <= min(placed) <= max(placed) < count:
            raise missing_partition(topic, next(p for p in placed if not 0 <= p < count), count)
        return placed
    placed = [0] * n
    keyed: list[int] = []
    for index, (key, partition) in enumerate(zip(keys, explicit, strict=True)):
        if partition is not None:
            if not 0 <= partition < count:
                raise missing_partition(topic, partition, count)
            placed[index] = partition
        elif key is not None:
            keyed.append(index)
        else:
            placed[index] = next(unkeyed) % count
    if keyed:
        hashed = partitions_for([cast("bytes", keys[i]) for i in keyed], count)
        for index, partition in zip(keyed, hashed, strict=True):
            placed[index] = partition
    return placed


def delivered(
    topic: str,
    records: Sequence[OutRecord],
    placed: list[int],
    reports: list[Message],
    now: int,
) -> list[Delivered]:
    """Where each of ``records`` landed, in input order.

    ``reports`` are the successful delivery reports of exactly these records, in any
    order; ``placed`` their partitions, from :func:`place`. Within one partition an
    idempotent producer writes one call's records at increasing offsets in produce
    order, so records sorted by partition (a stable sort keeps input order) line up with
    reports sorted by partition and offset. Arrival order is not used: delivery
    callbacks run in whichever thread polls, so with several producing threads they can
    append out of order. Timestamps are the ones the records were produced with
    (``now`` where a record had none).
    """
    if len(reports) != len(records):
        raise BackplaneError(
            f"kafka returned {len(reports)} delivery reports for {len(records)} records; "
            "produce them again"
        )
    order = sorted(range(len(placed)), key=placed.__getitem__)
    arrived = sorted(reports, key=_partition_offset)
    offsets = [0] * len(placed)
    for index, message in zip(order, arrived, strict=True):
        offsets[index] = message.offset() or 0
    stamps = [out.timestamp or now for out in records]
    # map() over the class: no Python-level loop around each Delivered's construction.
    return list(map(Delivered, repeat(topic), placed, offsets, stamps))
