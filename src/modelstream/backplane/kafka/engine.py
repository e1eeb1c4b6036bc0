"""The Kafka engine: :class:`KafkaBackplane`, the backplane port over confluent-kafka.

* **Producing** goes through one idempotent producer (``acks=all``) shared by every
  thread. A batch is handed to librdkafka whole, then the call waits until every record
  of *this* batch has its delivery report, so :meth:`KafkaBackplane.produce` returns only
  once all are acknowledged, and raises if any failed. Keyed records get their partition
  from :func:`~modelstream.backplane.partitioner.partition_for`, so placement is the
  same as on the other engines and as any Kafka client's default partitioner.
* **Topics** are created on first use through the admin API, with the default partition
  count; compacted topics get ``cleanup.policy=compact``.
* **Offsets** that brokers report unreliably (tansu's end offsets and time lookups) are
  established by reading, see :mod:`modelstream.backplane.kafka.reader`.
* A broker that does not answer within ``settings.connect_timeout_s`` raises
  :class:`~modelstream.errors.BackplaneUnavailable` from the constructor; librdkafka's own
  log lines go to the ``modelstream.backplane.kafka.librdkafka`` logger, never stderr.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from functools import partial

from confluent_kafka import OFFSET_BEGINNING, KafkaError, Message, Producer

from modelstream.backplane.kafka import config
from modelstream.backplane.kafka.admin import KafkaAdmin
from modelstream.backplane.kafka.consumer import KafkaConsumer
from modelstream.backplane.kafka.reader import PartitionReader, to_record
from modelstream.backplane.partitioner import partition_for
from modelstream.backplane.port import StartFrom
from modelstream.backplane.records import (
    Delivered,
    OutRecord,
    PartitionInfo,
    Record,
    TopicDescription,
    TopicPartition,
    TopicSpec,
)
from modelstream.errors import BackplaneError, BackplaneUnavailable, ConfigurationError
from modelstream.settings import Settings

# librdkafka's "unassigned": the partitioner picks (random for unkeyed records).
_ANY_PARTITION = -1


class _Batch:
    """Delivery reports of one produce call, in input order."""

    __slots__ = ("done", "error", "pending", "results")

    def __init__(self, size: int) -> None:
        self.results: list[Delivered | None] = [None] * size
        self.pending = size
        self.error: KafkaError | None = None
        self.done = threading.Event()

    def report(self, index: int, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.error = error
        else:
            self.results[index] = Delivered(
                message.topic() or "",
                message.partition() or 0,
                message.offset() or 0,
                message.timestamp()[1],
            )
        self.pending -= 1
        if self.pending == 0:
            self.done.set()


class KafkaBackplane:
    """Topics on a Kafka-protocol cluster; thread-safe. See the module docstring."""

    def __init__(self, brokers: str, settings: Settings) -> None:
        self.brokers = brokers
        self.settings = settings
        self.admin = KafkaAdmin(brokers, settings)
        self.admin.check()
        self.reader = PartitionReader(brokers, settings)
        self._producer = Producer(config.producer(brokers, settings))
        self._produce_timeout = config.producer(brokers, settings)["message.timeout.ms"] / 1000

    @property
    def url(self) -> str:
        return f"kafka://{self.brokers}"

    # -- topics ---------------------------------------------------------------------------

    def create_topic(
        self, name: str, partitions: int | None = None, *, compacted: bool = False
    ) -> TopicSpec:
        return self.admin.create(name, partitions, compacted)

    def delete_topic(self, name: str) -> None:
        self.admin.delete(name)

    def list_topics(self) -> list[TopicSpec]:
        return self.admin.all()

    def describe_topic(self, name: str) -> TopicDescription:
        spec = self.admin.spec(name)
        tps = [TopicPartition(name, p) for p in range(spec.partitions)]
        ends = self.reader.ends(tps)
        parts = tuple(PartitionInfo(tp.partition, self.reader.low(tp), ends[tp]) for tp in tps)
        groups = self.admin.groups(name, {p.partition: p.end for p in parts})
        return TopicDescription(spec, parts, tuple(groups))

    # -- producing ------------------------------------------------------------------------

    def produce(self, topic: str, records: Sequence[OutRecord]) -> list[Delivered]:
        if not records:
            return []
        count = self.admin.partitions(topic)
        batch = _Batch(len(records))
        producer = self._producer
        for index, out in enumerate(records):
            if out.partition is not None:
                if not 0 <= out.partition < count:
                    raise ConfigurationError(
                        f"partition {out.partition} does not exist in {topic!r} "
                        f"(it has {count}); leave partition unset to place by key"
                    )
                partition = out.partition
            elif out.key is not None:
                partition = partition_for(out.key, count)
            else:
                partition = _ANY_PARTITION
            report = partial(batch.report, index)
            while True:
                try:
                    if out.headers:
                        producer.produce(
                            topic,
                            out.value,
                            out.key,
                            partition,
                            on_delivery=report,
                            timestamp=out.timestamp or 0,
                            headers=list(out.headers),
                        )
                    else:
                        producer.produce(
                            topic,
                            out.value,
                            out.key,
                            partition,
                            on_delivery=report,
                            timestamp=out.timestamp or 0,
                        )
                    break
                except BufferError:
                    producer.poll(0.05)  # the local queue is full: let deliveries drain
        self._await(batch)
        if batch.error is not None:
            raise BackplaneUnavailable(
                f"kafka did not acknowledge records for {topic!r}: {batch.error.str()}; "
                "check the broker and produce them again"
            )
        return [d for d in batch.results if d is not None]

    def _await(self, batch: _Batch) -> None:
        # Every record ends with a delivery report within message.timeout.ms, so this is
        # bounded; the margin covers the last poll. Other threads' flushes may serve our
        # reports, hence the event rather than flush()'s own count.
        deadline = time.monotonic() + self._produce_timeout + 5
        while not batch.done.is_set():
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
