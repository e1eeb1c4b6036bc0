"""The Kafka engine's consumer: a confluent-kafka ``Consumer`` held to the port's contract.

Positions are tracked here, not asked of librdkafka, so :meth:`KafkaConsumer.position`
is exact from the moment a partition is assigned: every newly assigned partition is
started explicitly, at the group's committed offset, else at ``start`` (``earliest`` is
the partition's first offset, ``latest`` its *true* end, see
:mod:`modelstream.backplane.kafka.reader`). Group members use the eager ``range``
assignor, like the other engines; a partition that comes back to the same member in a
rebalance keeps its position (as on the other engines) instead of rewinding to the
last commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaTP

from modelstream.backplane.kafka import config
from modelstream.backplane.kafka.reader import learn_topics, take, to_headers
from modelstream.backplane.port import StartFrom
from modelstream.backplane.records import Record, TopicPartition
from modelstream.errors import BackplaneError, ConfigurationError, ConsumerClosed

if TYPE_CHECKING:
    from modelstream.backplane.kafka.engine import KafkaBackplane

# Errors a consumer reports as messages that librdkafka recovers from by itself.
_TRANSIENT = {
    KafkaError._PARTITION_EOF,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._MAX_POLL_EXCEEDED,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
}


class KafkaConsumer:
    """A consumer of a :class:`KafkaBackplane`; one thread at a time, see the port."""

    def __init__(
        self,
        backplane: KafkaBackplane,
        topics: tuple[str, ...],
        group: str | None,
        start: StartFrom,
    ) -> None:
        self._bp = backplane
        self._group = group
        self._start = start
        self._positions: dict[TopicPartition, int] = {}
        self._kept: dict[TopicPartition, int] = {}
        self._closed = False
        self._topics = list(topics)
        # an assignment this consumer could not start (see _on_assign); poll raises it
        self._unstarted: BackplaneError | None = None
        group_id = group or f"modelstream-groupless-{uuid.uuid4().hex}"
        self._consumer = Consumer(config.consumer(backplane.brokers, backplane.settings, group_id))
        if group is None:
            try:
                partitions = [
                    TopicPartition(name, p)
                    for name in topics
                    for p in range(backplane.admin.partitions(name))
                ]
                self._start_at(partitions, {})
                learn_topics(self._consumer, topics, backplane.settings.connect_timeout_s)
                self._consumer.assign(self._kafka_positions(partitions))
            except BaseException:
                # Nobody can close a consumer that was never returned: its client's
                # threads and sockets would outlive every failed attempt.
                self._consumer.close()
                raise
        else:
            self._subscribe()

    def _subscribe(self) -> None:
        """Join the group (again: librdkafka then rebalances it, and assigns anew)."""
        self._consumer.subscribe(
            self._topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    # -- assignment -------------------------------------------------------------------------

    def _start_at(
        self, partitions: list[TopicPartition], committed: dict[TopicPartition, int]
    ) -> None:
        """Set the starting position of newly assigned ``partitions``."""
        fresh = [tp for tp in partitions if tp not in committed and tp not in self._kept]
        if self._start == "latest":
            resolved = self._bp.reader.ends(fresh)
        else:
            resolved = {tp: self._bp.reader.low(tp) for tp in fresh}
        self._positions = {
            tp: self._kept.get(tp, committed.get(tp, resolved.get(tp, 0))) for tp in partitions
        }
        self._kept = {}

    def _kafka_positions(self, partitions: Iterable[TopicPartition]) -> list[KafkaTP]:
        return [KafkaTP(tp.topic, tp.partition, self._positions[tp]) for tp in partitions]

    def _on_assign(self, consumer: Consumer, assigned: list[KafkaTP]) -> None:
        partitions = [TopicPartition(k.topic, k.partition) for k in assigned]
        try:
            committed = self._read_committed(partitions)
            known = {tp: off for tp, off in committed.items() if off is not None}
            self._start_at(partitions, known)
        except BackplaneError as exc:
            # Not raised from here: confluent-kafka would then assign the partitions
            # itself, at offsets this consumer does not track, and a role that reads
            # only what assignment() names would skip their records for as long as the
            # group stays as it is. Nothing is assigned instead; poll raises the error
            # and joins the group again, which assigns the partitions anew.
            self._positions = {}
            self._unstarted = exc
            consumer.assign([])
            return
        consumer.assign(self._kafka_positions(partitions))

    def _on_revoke(self, consumer: Consumer, revoked: list[KafkaTP]) -> None:
        # Eager rebalancing revokes everything; remember positions so partitions that
        # come straight back to this member continue where they were.
        self._kept = dict(self._positions)
        self._positions = {}

    def _on_lost(self, consumer: Consumer, lost: list[KafkaTP]) -> None:
        # Lost means another member may have read them since: restart from the commit.
        self._kept = {}
        self._positions = {}

    # -- the port ---------------------------------------------------------------------------

    def _check(self) -> None:
        if self._closed:
            raise ConsumerClosed("this consumer was closed; create a new one")

    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        self._check()
        # The port promises to return as soon as anything is there (see take).
        messages = take(self._consumer, max_records, timeout)
        if self._unstarted is not None:
            unstarted, self._unstarted = self._unstarted, None
            self._subscribe()
            raise unstarted
        records: list[Record] = []
        append = records.append
        # This loop bounds consume throughput, so per-record work is kept minimal: the
        # Record is built inline (no helper call), and positions are updated once per
        # partition after the loop. librdkafka itself drops messages fetched before a
        # seek or for a revoked partition, so none needs filtering here.
        last: dict[tuple[str, int], int] = {}
        for m in messages:
            error = m.error()
            if error is not None:
                if error.fatal() or error.code() not in _TRANSIENT:
                    raise config.fail("consume", KafkaException(error))
                continue
            topic = m.topic() or ""
            partition = m.partition() or 0
            offset = m.offset() or 0
            headers = m.headers()
            append(
                Record(
                    topic,
                    partition,
                    offset,
                    m.timestamp()[1],
                    m.key(),
                    m.value() or b"",
                    to_headers(headers) if headers else (),
                )
            )
            last[topic, partition] = offset
        positions = self._positions
        for (topic, partition), offset in last.items():
            tp = TopicPartition(topic, partition)
            if tp in positions:
                positions[tp] = offset + 1
        return records

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        self._check()
        if self._group is None:
            raise ConfigurationError("commit needs a consumer group: pass group=... ")
        chosen = dict(self._positions) if offsets is None else dict(offsets)
        if not chosen:
            return
        request = [KafkaTP(tp.topic, tp.partition, off) for tp, off in chosen.items()]
        try:
            self._consumer.commit(offsets=request, asynchronous=False)
        except KafkaException as exc:
            raise config.fail("commit", exc) from exc

    def _read_committed(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int | None]:
        if self._group is None or not partitions:
            return dict.fromkeys(partitions)
        request = [KafkaTP(tp.topic, tp.partition) for tp in partitions]
        try:
            answer = self._consumer.committed(request, timeout=self._bp.settings.connect_timeout_s)
        except KafkaException as exc:
            raise config.fail("committed offsets", exc) from exc
        return {
            TopicPartition(k.topic, k.partition): (k.offset if k.offset >= 0 else None)
            for k in answer
        }

    def committed(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        self._check()
        return self._read_committed(list(partitions))

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._positions)

    def position(self, partition: TopicPartition) -> int:
        self._check()
        return self._positions[partition]

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._seek({partition: max(0, offset)})

    def _seek(self, targets: Mapping[TopicPartition, int]) -> None:
        self._check()
        for tp, offset in targets.items():
            if tp not in self._positions:
                raise ConfigurationError(f"{tp} is not assigned to this consumer")
            try:
                self._consumer.seek(KafkaTP(tp.topic, tp.partition, offset))
            except KafkaException as exc:
                raise config.fail("seek", exc) from exc
            self._positions[tp] = offset

    def _targets(self, partitions: Iterable[TopicPartition] | None) -> list[TopicPartition]:
        chosen = list(self._positions) if partitions is None else list(partitions)
        return [tp for tp in chosen if tp in self._positions]

    def seek_to_beginning(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        self._check()
        self._seek({tp: self._bp.reader.low(tp) for tp in self._targets(partitions)})

    def seek_to_end(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        self._check()
        self._seek(self._bp.reader.ends(self._targets(partitions)))

    def seek_to_time(
        self, timestamp_ms: int, partitions: Iterable[TopicPartition] | None = None
    ) -> None:
        self._check()
        self._seek(self._bp.offsets_for_time(self._targets(partitions), timestamp_ms))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._positions = {}
        self._consumer.close()
