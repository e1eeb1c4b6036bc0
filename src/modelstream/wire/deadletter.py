"""Records that cannot be read go to ``<service>.dead-letter`` with the reason.

The dead-letter record keeps the original key and value untouched, and adds headers:
``x-source-topic``, ``x-source-partition``, ``x-source-offset`` and ``x-reason``.
"""

from __future__ import annotations

import logging

from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord, Record

log = logging.getLogger(__name__)


def dead_letter_record(record: Record, reason: str) -> OutRecord:
    """The dead-letter copy of ``record`` explaining ``reason``."""
    headers = (
        *record.headers,
        ("x-source-topic", record.topic.encode()),
        ("x-source-partition", str(record.partition).encode()),
        ("x-source-offset", str(record.offset).encode()),
        ("x-reason", reason.encode("utf-8", "replace")[:4096]),
    )
    return OutRecord(record.value, record.key, headers, record.timestamp)


def send_to_dead_letter(backplane: Backplane, topic: str, record: Record, reason: str) -> None:
    """Produce the dead-letter copy of ``record`` onto ``topic``, and log it once."""
    log.warning("dead-letter %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
    backplane.produce(topic, [dead_letter_record(record, reason)])
