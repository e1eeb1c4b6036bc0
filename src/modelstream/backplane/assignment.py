"""How a consumer group's partitions are spread over its members (engines without a broker).

Kafka's *range* strategy: per topic, partitions are split into contiguous ranges over
the members sorted by id, the first ``partitions % members`` members taking one more.
Because every topic is split the same way, partition ``p`` of topics with equal partition
counts lands on the same member, which is what co-partitioned readers (the rendezvous
reads ``requests`` and ``scores`` together) rely on. Kafka's own default assignor is
range too, so all engines agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from modelstream.backplane.records import TopicPartition


def range_assign(
    members: Sequence[str], partitions: Mapping[str, int]
) -> dict[str, frozenset[TopicPartition]]:
    """Assign every partition of ``partitions`` (topic -> count) to one of ``members``."""
    ordered = sorted(set(members))
    result: dict[str, set[TopicPartition]] = {member: set() for member in ordered}
    if not ordered:
        return {}
    for topic, count in partitions.items():
        per_member, extra = divmod(count, len(ordered))
        start = 0
        for index, member in enumerate(ordered):
            size = per_member + (1 if index < extra else 0)
            result[member].update(TopicPartition(topic, p) for p in range(start, start + size))
            start += size
    return {member: frozenset(tps) for member, tps in result.items()}
