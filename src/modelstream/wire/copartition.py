"""The request path's topics share one partition count: :func:`ensure_copartitioned`.

Partition ``p`` of ``requests``, ``scores`` and ``results`` holds the same requests:
a scorer writes each score, and the rendezvous each result, to the partition number of
the request's record, whichever partitioner placed the request. So the three topics must
have one count, and the rendezvous member owning ``p`` of ``requests`` owns ``p`` of
``scores`` (co-partitioned consumer groups). The scorers and the rendezvous both make
sure of it before they read.
"""

from __future__ import annotations

from modelstream.backplane.port import Backplane
from modelstream.errors import ConfigurationError
from modelstream.wire.topics import ServiceTopics


def ensure_copartitioned(backplane: Backplane, topics: ServiceTopics, partitions: int) -> int:
    """Create requests, scores and results with one partition count; return it.

    The count is that of an existing ``requests``, else ``partitions``. Raises
    ``ConfigurationError`` naming the topic to recreate when one exists with another
    count.
    """
    existing = {spec.name: spec.partitions for spec in backplane.list_topics()}
    count = existing.get(topics.requests) or partitions
    for name in (topics.requests, topics.scores, topics.results):
        spec = backplane.create_topic(name, count)
        if spec.partitions != count:
            raise ConfigurationError(
                f"topic {name!r} has {spec.partitions} partitions but {topics.requests!r} "
                f"has {count}: a request's scores and result go to its partition number, "
                f"so they need one count; recreate {name!r} with {count} partitions"
            )
    return count
