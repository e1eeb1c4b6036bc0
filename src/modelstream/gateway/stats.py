"""Per-model statistics for the management API.

Where the scorers run in this process, their live :class:`~modelstream.scoring.stats.StatsBook`
is the source (passed in as a callable). Otherwise the figures are rebuilt from the
most recent records of ``<service>.scores`` with the same ``StatsBook`` code, so both
sources agree on definitions (see :mod:`modelstream.scoring.stats`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelstream.backplane.port import Backplane
from modelstream.backplane.records import TopicPartition
from modelstream.errors import DecodeError
from modelstream.scoring.stats import StatsBook, VersionStats
from modelstream.wire.scores import decode_score
from modelstream.wire.topics import ServiceTopics

StatsSource = Callable[[str], list[VersionStats]]

DEFAULT_LIMIT = 200_000


def stats_from_scores(
    backplane: Backplane, service: str, limit: int = DEFAULT_LIMIT
) -> list[VersionStats]:
    """Statistics per model version over the last ``limit`` score records of ``service``.

    Blocking (reads the backplane); call it from a worker thread. Unreadable records are
    skipped (the scorers' own dead-letter handling reports them).
    """
    topic = ServiceTopics(service).scores
    partitions = backplane.partitions(topic)
    per_partition = max(1, limit // max(1, len(partitions)))
    remaining = {p.partition: p.end for p in partitions if p.records}
    book = StatsBook()
    if not remaining:
        return []
    consumer = backplane.consumer([topic], start="earliest")
    try:
        for info in partitions:
            tp = TopicPartition(topic, info.partition)
            if tp in consumer.assignment():
                consumer.seek(tp, max(info.start, info.end - per_partition))
        while remaining:
            records = consumer.poll(5000, timeout=0.2)
            if not records:
                break
            scores = []
            for record in records:
                end = remaining.get(record.partition)
                if end is None or record.offset >= end:
                    continue
                if record.offset == end - 1:
                    del remaining[record.partition]
                try:
                    scores.append(decode_score(record.value))
                except DecodeError:
                    continue
            book.record_scores(scores)
    finally:
        consumer.close()
    return book.snapshot()


def stats_json(stats: list[VersionStats]) -> list[dict[str, Any]]:
    return [s.to_json() for s in stats]
