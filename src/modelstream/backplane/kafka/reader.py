"""Reads whole partitions outside any group: true end offsets, time seeks, compacted views.

Why this exists: brokers disagree about offsets. tansu 0.6 answers ``ListOffsets(latest)``
with ``base offset of the last record batch + 1``, wrong whenever the last batch holds
several records, and answers every ``ListOffsets(timestamp)`` with 0. The high watermark
it returns in *fetch* responses is right, and so are the records themselves. So:

* the end of a partition is found by fetching from the listed end (at most one batch
  before the true end) up to the partition-EOF event, which carries the fetch high
  watermark; on a correct broker that is a single empty fetch;
* a time seek starts at the broker's answer (right on Kafka, 0 on tansu) and scans
  forward to the first record whose timestamp is at or after the time.

One private consumer (never in a group, never committing) serves every call, serialised
by a lock, so no connection is set up per call.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, cast

from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as KafkaTP

from modelstream.backplane.kafka import config
from modelstream.backplane.records import Headers, Record, TopicPartition
from modelstream.errors import BackplaneUnavailable
from modelstream.settings import Settings

#: Called with each message; returns True to stop reading that partition.
Visitor = Callable[[Message], bool]


class PartitionReader:
    """Scans partitions from a given offset to their end; thread-safe."""

    def __init__(self, brokers: str, settings: Settings) -> None:
        conf = config.consumer(brokers, settings, f"modelstream-reader-{uuid.uuid4().hex}")
        conf["enable.partition.eof"] = True
        self._consumer = Consumer(conf)
        self._timeout = settings.connect_timeout_s
        self._lock = threading.Lock()
        self._known: set[str] = set()  # topics whose metadata this consumer has asked for

    def scan(self, starts: dict[TopicPartition, int], visit: Visitor) -> dict[TopicPartition, int]:
        """Feed ``visit`` every message from ``starts`` (offset, or ``OFFSET_END``) onward.

        Returns, per partition, the offset where reading stopped: the offset of the
        message ``visit`` stopped at, or the partition's true end.

        ``connect_timeout_s`` bounds how long the broker may serve *nothing*, not the
        whole scan: every message or end-of-partition event moves the deadline on, so a
        large topic read from a healthy broker completes however long it takes, and a
        broker that goes silent still raises :class:`BackplaneUnavailable` in bounded time.
        """
        stopped: dict[TopicPartition, int] = {}
        if not starts:
            return stopped
        with self._lock:
            unknown = {tp.topic for tp in starts} - self._known
            learn_topics(self._consumer, unknown, self._timeout)
            self._known |= unknown
            self._consumer.assign([KafkaTP(tp.topic, tp.partition, o) for tp, o in starts.items()])
            deadline = time.monotonic() + self._timeout
            try:
                while len(stopped) < len(starts):
                    if time.monotonic() > deadline:
                        raise BackplaneUnavailable(
                            f"kafka broker served nothing for {self._timeout:g}s while "
                            f"{len(starts) - len(stopped)} partition(s) were still being "
                            "read; check that it runs and is reachable"
                        )
                    messages = take(self._consumer)
                    if messages:
                        # Progress: the broker serves; the timeout measures silence.
                        deadline = time.monotonic() + self._timeout
                    for message in messages:
                        tp = TopicPartition(message.topic() or "", message.partition() or 0)
                        if tp in stopped or tp not in starts:
                            continue
                        error = message.error()
                        if error is None:
                            if visit(message):
                                stopped[tp] = message.offset() or 0
                                self._consumer.pause([message_tp(message)])
                        elif error.code() == KafkaError._PARTITION_EOF:
                            stopped[tp] = message.offset() or 0
                        elif error.fatal() or error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                            raise config.fail("read", KafkaException(error))
            finally:
                # A pause outlives the assignment in librdkafka: undo it for the next scan.
                self._consumer.resume(self._consumer.assignment())
                self._consumer.unassign()
        return stopped

    def ends(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The true end offset (next offset to be written) of each partition."""
        return self.scan(dict.fromkeys(partitions, OFFSET_END), lambda _: False)

    def first_at(
        self, starts: dict[TopicPartition, int], timestamp_ms: int
    ) -> dict[TopicPartition, int]:
        """From ``starts``, the offset of the first record with timestamp >= ``timestamp_ms``."""
        return self.scan(starts, lambda m: (m.timestamp()[1]) >= timestamp_ms)

    def offsets_for_time(
        self, partitions: Iterable[TopicPartition], timestamp_ms: int
    ) -> dict[TopicPartition, int]:
        """The broker's answer to ``ListOffsets(timestamp)``: a lower bound to scan from."""
        request = [KafkaTP(tp.topic, tp.partition, timestamp_ms) for tp in partitions]
        if not request:
            return {}
        with self._lock:
            try:
                answer = self._consumer.offsets_for_times(request, timeout=self._timeout)
            except KafkaException as exc:
                raise config.fail("offsets for time", exc) from exc
        return {TopicPartition(k.topic, k.partition): k.offset for k in answer}

    def low(self, partition: TopicPartition) -> int:
        """The first readable offset of ``partition``."""
        with self._lock:
            try:
                low, _ = self._consumer.get_watermark_offsets(
                    KafkaTP(partition.topic, partition.partition), timeout=self._timeout
                )
            except KafkaException as exc:
                raise config.fail("watermarks", exc) from exc
        return int(low)

    def close(self) -> None:
        with self._lock:
            self._consumer.close()


def take(consumer: Consumer, most: int = 10_000, wait_s: float = 0.1) -> list[Message]:
    """What ``consumer`` has queued, else the first message within ``wait_s`` and what
    came with it. Why not one ``consume(most, wait_s)``: librdkafka returns from that
    only once it holds ``most`` messages or the wait is over, so every scan took at least
    ``wait_s`` (each registry read on Kafka cost 100 ms, where 20 ms is the fetch)."""
    messages = consumer.consume(most, 0)
    if not messages:
        messages = consumer.consume(1, wait_s)
        if messages and most > 1:
            messages += consumer.consume(most - 1, 0)
    return messages


def learn_topics(consumer: Consumer, topics: Iterable[str], timeout_s: float) -> None:
    """Ask the broker for ``topics``' metadata, before ``consumer`` is assigned them.

    Why: librdkafka learns a topic that is assigned, not subscribed, from a metadata
    timer, so the first fetch of a topic it had not seen waited 0.5-1 s; every registry
    read of a new service and every groupless consumer paid it. One metadata request
    (a few ms) up front makes the fetch start at once.
    """
    for topic in topics:
        try:
            consumer.list_topics(topic, timeout=timeout_s)
        except KafkaException as exc:
            raise config.fail("metadata", exc) from exc


def message_tp(message: Message) -> KafkaTP:
    return KafkaTP(message.topic() or "", message.partition() or 0)


def to_headers(headers: Any) -> Headers:
    """Consumed headers (a list of ``(name, bytes | None)`` pairs) as a record's headers."""
    return tuple((k, v or b"") for k, v in cast("list[tuple[str, bytes | None]]", headers))


def to_record(m: Message) -> Record:
    """The record a consumed (error-free) message carries; null values read as ``b""``."""
    headers = m.headers()
    return Record(
        m.topic() or "",
        m.partition() or 0,
        m.offset() or 0,
        m.timestamp()[1],
        m.key(),
        m.value() or b"",
        to_headers(headers) if headers else (),
    )
