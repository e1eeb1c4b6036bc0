"""Records that cannot be read go to ``<service>.dead-letter`` with the reason.

The dead-letter record keeps the original key and value untouched, and adds headers:
``x-source-topic``, ``x-source-partition``, ``x-source-offset`` and ``x-reason``.

One exception: a value above :data:`~modelstream.wire.codec.MAX_RECORD_BYTES` (refused
for its size), or one whose copy with those headers would be above the backplane's
record limit (``limit``: a record just under Kafka's 1 MB would no longer fit), is cut to
its first :data:`KEPT_BYTES` bytes (fewer if the limit needs it), with the header
``x-original-size`` giving its length. Every role that reads a topic dead-letters what it
cannot read, so copying a huge record whole would multiply it on disk, slow each role
by a large write, and, refused by the backplane, stall the role for ever.
"""

from __future__ import annotations

import logging

from modelstream.backplane.port import Backplane
from modelstream.backplane.records import (
    LOCAL_MAX_RECORD_BYTES,
    Headers,
    OutRecord,
    Record,
    record_size,
)
from modelstream.wire.codec import MAX_RECORD_BYTES

log = logging.getLogger(__name__)

KEPT_BYTES = 64 * 1024


def dead_letter_record(
    record: Record, reason: str, limit: int = LOCAL_MAX_RECORD_BYTES
) -> OutRecord:
    """The dead-letter copy of ``record`` explaining ``reason`` (see the module docstring);
    never above ``limit`` bytes, the backplane's ``max_record_bytes``, unless its key and
    headers alone are."""
    headers: Headers = (
        *record.headers,
        ("x-source-topic", record.topic.encode()),
        ("x-source-partition", str(record.partition).encode()),
        ("x-source-offset", str(record.offset).encode()),
        ("x-reason", reason.encode("utf-8", "replace")[:4096]),
    )
    copy = OutRecord(record.value, record.key, headers, record.timestamp)
    size = len(record.value)
    if size <= MAX_RECORD_BYTES and record_size(copy) <= limit:
        return copy
    cut: Headers = (("x-original-size", str(size).encode()),)
    room = limit - record_size(copy) + size - record_size(OutRecord(b"", None, cut))
    kept = max(0, min(KEPT_BYTES, room))
    return OutRecord(record.value[:kept], record.key, (*cut, *headers), record.timestamp)


def send_to_dead_letter(backplane: Backplane, topic: str, record: Record, reason: str) -> None:
    """Produce the dead-letter copy of ``record`` onto ``topic``, and log it once."""
    log.warning("dead-letter %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
    backplane.produce(topic, [dead_letter_record(record, reason, backplane.max_record_bytes)])
