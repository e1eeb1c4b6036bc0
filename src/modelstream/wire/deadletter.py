"""Records that cannot be read go to ``<service>.dead-letter`` with the reason.

The dead-letter record keeps the original key and value untouched, and adds headers:
``x-source-topic``, ``x-source-partition``, ``x-source-offset`` and ``x-reason``.

One exception: a value above :data:`~modelstream.wire.codec.MAX_RECORD_BYTES` (refused
for its size) is cut to its first :data:`KEPT_BYTES` bytes, with the header
``x-original-size`` giving its length. Every role that reads a topic dead-letters what it
cannot read, so copying a huge record whole would multiply it on disk, slow each role
by a large write, and on Kafka exceed the broker's message size and fail the role.
"""

from __future__ import annotations

import logging

from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord, Record
from modelstream.wire.codec import MAX_RECORD_BYTES

log = logging.getLogger(__name__)

KEPT_BYTES = 64 * 1024


def dead_letter_record(record: Record, reason: str) -> OutRecord:
    """The dead-letter copy of ``record`` explaining ``reason`` (see the module docstring)."""
    value = record.value
    cut: tuple[tuple[str, bytes], ...] = ()
    if len(value) > MAX_RECORD_BYTES:
        value, cut = value[:KEPT_BYTES], (("x-original-size", str(len(value)).encode()),)
    headers = (
        *record.headers,
        *cut,
        ("x-source-topic", record.topic.encode()),
        ("x-source-partition", str(record.partition).encode()),
        ("x-source-offset", str(record.offset).encode()),
        ("x-reason", reason.encode("utf-8", "replace")[:4096]),
    )
    return OutRecord(value, record.key, headers, record.timestamp)


def send_to_dead_letter(backplane: Backplane, topic: str, record: Record, reason: str) -> None:
    """Produce the dead-letter copy of ``record`` onto ``topic``, and log it once."""
    log.warning("dead-letter %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
    backplane.produce(topic, [dead_letter_record(record, reason)])
