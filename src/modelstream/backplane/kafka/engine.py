"""The Kafka engine: :class:`KafkaBackplane`, the backplane port over confluent-kafka.

* **Producing** goes through one idempotent producer (``acks=all``) shared by every
  thread. A batch is handed to librdkafka whole, then the call waits until every record
  of *this* batch has its delivery report, so :meth:`KafkaBackplane.produce` returns only
  once all are acknowledged, and raises if any failed. Every record is given its
  partition by the engine (keyed ones by Kafka's murmur2, as any Kafka client's default
  partitioner would; unkeyed ones round-robin), and one delivery callback serves the
  whole call; see :mod:`modelstream.backplane.kafka.batches` for why that is exact.
* **Topics** are created on first use through the admin API, with the default partition
  count; compacted topics get ``cleanup.policy=compact``.
* **Offsets** that brokers report unreliably (tansu's end offsets and time lookups) are
  established by reading, see :mod:`modelstream.backplane.kafka.reader`.
* A broker that does not answer within ``settings.connect_timeout_s`` raises
  :class:`~modelstream.errors.BackplaneUnavailable` from the constructor; librdkafka's own
  log lines go to the ``modelstream.backplane.kafka.librdkafka`` logger, never stderr.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable, Mapping, Sequence

from confluent_kafka import OFFSET_BEGINNING, KafkaError, Message, Producer

from modelstream.backplane.kafka import batches, config
from modelstream.backplane.kafka.admin import KafkaAdmin
from modelstream.backplane.kafka.consumer import KafkaConsumer
from modelstream.backplane.kafka.reader import PartitionReader, to_record
from modelstream.backplane.port import StartFrom
from modelstream.backplane.records import (
    Delivered,
    OutRecord,
    PartitionInfo,
    Record,
    TopicDescription,
    TopicPartition,
    TopicSpec,
    check_sizes,
    now_ms,
    record_size,
)
from modelstream.errors import (
    BackplaneError,
    BackplaneUnavailable,
    ConfigurationError,
    RecordTooLarge,
)
from modelstream.settings import Settings

# Errors after which a producer never delivers again: it must be replaced.
_FENCED = frozenset({KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH})


class KafkaBackplane:
    """Topics on a Kafka-protocol cluster; thread-safe. See the module docstring."""

    def __init__(self, brokers: str, settings: Settings) -> None:
        self.brokers = brokers
        self.settings = settings
        self.admin = KafkaAdmin(brokers, settings)
        self.admin.check()
        self.reader = PartitionReader(brokers, settings)
        self._producer = Producer(config.producer(brokers, settings))
        self._renewing = threading.Lock()
        # Deals unkeyed records over the partitions; next() on a count is atomic.
        self._unkeyed = itertools.count()
        self._produce_timeout = config.producer(brokers, settings)["message.timeout.ms"] / 1000

    @property
    def url(self) -> str:
        return f"kafka://{self.brokers}"

    @property
    def max_record_bytes(self) -> int:
        return config.max_record_bytes(self.settings)

    # -- topics ---------------------------------------------------------------------------

    def create_topic(
        self, name: str, partitions: int | None = None, *, compacted: bool = False
    ) -> TopicSpec:
        return self.admin.create(name, partitions, compacted)

    def delete_topic(self, name: str) -> None:
        self.admin.delete(name)

    def list_topics(self) -> list[TopicSpec]:
        return self.admin.all()

    def set_group_offsets(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        self.admin.set_offsets(group, offsets)

    def partitions(self, name: str) -> tuple[PartitionInfo, ...]:
        return self._partitions(self.admin.spec(name))

    def group_offsets(self, group: str, topic: str) -> dict[int, int]:
        return self.admin.group_offsets(group, self.admin.spec(topic))

    def describe_topic(self, name: str) -> TopicDescription:
        spec = self.admin.spec(name)
        parts = self._partitions(spec)
        groups = self.admin.groups(name, {p.partition: p.end for p in parts})
        return TopicDescription(spec, parts, tuple(groups))

    def _partitions(self, spec: TopicSpec) -> tuple[PartitionInfo, ...]:
        tps = [TopicPartition(spec.name, p) for p in range(spec.partitions)]
        ends = self.reader.ends(tps)
        return tuple(PartitionInfo(tp.partition, self.reader.low(tp), ends[tp]) for tp in tps)

    # -- producing ------------------------------------------------------------------------

    def produce(self, topic: str, records: Sequence[OutRecord]) -> list[Delivered]:
        if not records:
            return []
        check_sizes(topic, records, self.max_record_bytes)
        placed = batches.place(topic, records, self.admin.partitions(topic), self._unkeyed)
        now = now_ms()
        # One callback for the whole call, not a closure per record: it only collects
        # the reports, which batches.delivered matches to the records afterwards.
        reports: list[Message] = []
        failures: list[KafkaError] = []
        collect = reports.append

        def report(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                failures.append(error)
            collect(message)

        produce = self._producer.produce
        for out, partition in zip(records, placed, strict=True):
            # Positional arguments: this call runs once per record, keywords cost here.
            headers: list[tuple[str, str | bytes | None]] | None = (
                list(out.headers) if out.headers else None
            )
            while True:
                try:
                    produce(
                        topic,
                        out.value,
                        out.key,
                        partition,
                        report,
                        None,
                        out.timestamp or now,
                        headers,
                    )
                    break
                except BufferError:
                    self._producer.poll(0.05)  # the local queue is full: let deliveries drain
        self._await(reports, len(records))
        if any(e.fatal() or e.code() in _FENCED for e in failures):
            self._renew_producer(produce)
        if any(e.code() == KafkaError.MSG_SIZE_TOO_LARGE for e in failures):
            # the broker's message.max.bytes is below ours: some records went, not all
            raise RecordTooLarge(topic, max(map(record_size, records)), self.max_record_bytes)
        if failures:
            raise BackplaneUnavailable(
                f"kafka did not acknowledge records for {topic!r}: {failures[0].str()}; "
                "check the broker and produce them again"
            )
        return batches.delivered(topic, records, placed, reports, now)

    def _renew_producer(self, used: object) -> None:
        """Replace the producer whose ``produce`` was ``used``, fenced or failed for good.

        An idempotent producer bumps its epoch after a delivery timeout (a broker gone
        for longer than ``message.timeout.ms``); some brokers (tansu among them) then
        fence it for good. A fresh producer lets the caller's retry, and every later
        produce, go through once the broker is back.
        """
        with self._renewing:
            if self._producer.produce == used:
                self._producer = Producer(config.producer(self.brokers, self.settings))

    def _await(self, reports: list[Message], expected: int) -> None:
        # Every record ends with a delivery report within message.timeout.ms, so this is
        # bounded; the margin covers the last poll. Other threads' flushes may serve our
        # reports, hence the count rather than flush()'s own. flush() also sends what is
        # lingering at once, so linger.ms never delays an acknowledged produce.
        deadline = time.monotonic() + self._produce_timeout + 5
        while len(reports) < expected:
            if time.monotonic() > deadline:
                raise BackplaneUnavailable(
                    "kafka delivery reports did not arrive; check that the broker runs"
                )
            self._producer.flush(0.1)

    # -- consuming ------------------------------------------------------------------------

    def consumer(
        self, topics: Sequence[str], *, group: str | None = None, start: StartFrom = "earliest"
    ) -> KafkaConsumer:
        if not topics:
            raise ConfigurationError("a consumer needs at least one topic")
        for name in topics:
            self.admin.partitions(name)
        return KafkaConsumer(self, tuple(topics), group, start)

    def offsets_for_time(
        self, partitions: Iterable[TopicPartition], timestamp_ms: int
    ) -> dict[TopicPartition, int]:
        """Per partition, the first offset whose record's timestamp is >= ``timestamp_ms``.

        The broker's time index gives where to start; reading confirms it (see reader).
        """
        chosen = list(partitions)
        hints = self.reader.offsets_for_time(chosen, timestamp_ms)
        starts = {tp: hints.get(tp, 0) for tp in chosen}
        past_end = [tp for tp, off in starts.items() if off < 0]
        result = self.reader.ends(past_end)
        result.update(
            self.reader.first_at({tp: o for tp, o in starts.items() if o >= 0}, timestamp_ms)
        )
        return result

    def read_compacted(self, topic: str) -> dict[bytes, Record]:
        count = self.admin.partitions(topic)
        latest: dict[bytes, Record] = {}

        def keep(m: Message) -> bool:
            record = to_record(m)
            if record.key is not None:
                # Partitions are read in offset order, so within one the last read is the
                # last written; a key found in two partitions (records placed by hand)
                # falls back to event time.
                previous = latest.get(record.key)
                if (
                    previous is None
                    or previous.partition == record.partition
                    or previous.timestamp <= record.timestamp
                ):
                    latest[record.key] = record
            return False

        starts = {TopicPartition(topic, p): OFFSET_BEGINNING for p in range(count)}
        self.reader.scan(starts, keep)
        return latest

    def close(self) -> None:
        """Flush the producer and close the reader; idempotent."""
        remaining = self._producer.flush(self.settings.connect_timeout_s)
        self.reader.close()
        if remaining:
            raise BackplaneError(f"{remaining} produced records were not delivered at close")
