"""Kafka-engine behaviour beyond the shared contract: a dead broker, foreign producers."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Message, Producer

from modelstream.backplane.kafka import reader
from modelstream.backplane.kafka.consumer import KafkaConsumer
from modelstream.backplane.kafka.engine import KafkaBackplane
from modelstream.backplane.partitioner import partition_for
from modelstream.backplane.records import Delivered, OutRecord, TopicPartition
from modelstream.errors import BackplaneUnavailable
from modelstream.settings import Settings
from modelstream.testing.broker import TansuBroker, free_port
from tests.backplane.helpers import collect, unique

pytestmark = [pytest.mark.kafka, pytest.mark.integration]


def _settings(brokers: str, timeout_s: float = 10.0) -> Settings:
    return Settings(
        backplane=f"kafka://{brokers}", session_timeout_ms=3000, connect_timeout_s=timeout_s
    )


def test_a_broker_that_does_not_answer_is_reported_not_waited_for() -> None:
    brokers = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(BackplaneUnavailable, match="did not answer within 1s"):
        KafkaBackplane(brokers, _settings(brokers, timeout_s=1.0))
    # Bounded by the setting (with slack for a loaded machine), never a hang.
    assert time.monotonic() - started < 30


def test_a_plain_kafka_client_places_keys_where_we_do(kafka_broker: str) -> None:
    backplane = KafkaBackplane(kafka_broker, _settings(kafka_broker))
    try:
        name = unique("foreign")
        backplane.create_topic(name, 6)
        producer = Producer(
            {"bootstrap.servers": kafka_broker, "partitioner": "murmur2_random", "acks": "all"}
        )
        keys = [f"key-{i}".encode() for i in range(40)]
        for key in keys:
            producer.produce(name, value=b"v", key=key)
        assert producer.flush(10) == 0
        with_consumer = backplane.consumer([name])
        try:
            records = collect(with_consumer, len(keys))
        finally:
            with_consumer.close()
        assert len(records) == len(keys)
        for record in records:
            assert record.key is not None
            assert record.partition == partition_for(record.key, 6)
    finally:
        backplane.close()


def test_end_offsets_are_true_after_multi_record_batches(kafka_broker: str) -> None:
    # tansu lists the end of a partition as the last batch's base offset + 1.
    backplane = KafkaBackplane(kafka_broker, _settings(kafka_broker))
    try:
        name = unique("ends")
        backplane.create_topic(name, 1)
        backplane.produce(name, [OutRecord(b"%d" % i) for i in range(25)])
        backplane.produce(name, [OutRecord(b"%d" % i) for i in range(5)])
        (partition,) = backplane.describe_topic(name).partitions
        assert (partition.start, partition.end) == (0, 30)
    finally:
        backplane.close()


def _mixed_batch(tag: str, count: int) -> list[OutRecord]:
    """Keyed, unkeyed, explicitly placed and headed records, interleaved."""
    records: list[OutRecord] = []
    for i in range(count):
        value = f"{tag}-{i}".encode()
        if i % 4 == 0:
            records.append(OutRecord(value, key=f"k{i}".encode()))
        elif i % 4 == 1:
            records.append(OutRecord(value))
        elif i % 4 == 2:
            records.append(OutRecord(value, partition=i % 3))
        else:
            records.append(OutRecord(value, key=b"same", headers=(("n", b"%d" % i),)))
    return records


def test_each_delivery_names_where_its_own_record_is(kafka_broker: str) -> None:
    # Delivery reports come back per partition; every one must be matched to its record,
    # also while other threads produce to the same partitions through the same producer.
    backplane = KafkaBackplane(kafka_broker, _settings(kafka_broker))
    try:
        name = unique("matched")
        backplane.create_topic(name, 3)
        batches = {tag: _mixed_batch(tag, 400) for tag in ("a", "b", "c")}
        delivered: dict[str, list[Delivered]] = {}

        def produce(tag: str) -> None:
            delivered[tag] = backplane.produce(name, batches[tag])

        threads = [threading.Thread(target=produce, args=(tag,)) for tag in batches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        consumer = backplane.consumer([name])
        try:
            stored = {(r.partition, r.offset): r.value for r in collect(consumer, 1200)}
        finally:
            consumer.close()
        assert len(stored) == 1200
        for tag, records in batches.items():
            assert len(delivered[tag]) == len(records)
            for out, where in zip(records, delivered[tag], strict=True):
                assert stored[where.partition, where.offset] == out.value
                if out.partition is not None:
                    assert where.partition == out.partition
                elif out.key is not None:
                    assert where.partition == partition_for(out.key, 3)
    finally:
        backplane.close()


class _SlowLink(Consumer):
    """A consumer whose broker hands over each batch of records only after a delay."""

    delay_s = 0.9

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        messages = super().consume(num_messages, timeout)
        if messages:
            time.sleep(self.delay_s)
        return messages


def test_reads_that_outlast_the_timeout_succeed_while_records_arrive(
    kafka_broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # connect_timeout_s bounds the broker's silence, not a whole read: a topic that takes
    # longer than the timeout to read (a large one, a slow link) is still read in full.
    monkeypatch.setattr(reader, "Consumer", _SlowLink)
    # The reader takes up to 10,000 records a batch, so each read is >= 3 slow batches
    # (>= 2.7 s). The timeout leaves a loaded machine time to open the first connection.
    timeout_s, count = 2.5, 30_000
    backplane = KafkaBackplane(kafka_broker, _settings(kafka_broker, timeout_s))
    try:
        name = unique("long-read")
        backplane.create_topic(name, 1, compacted=True)
        records = [
            OutRecord(b"%06d" % i, key=b"k%d" % (i % 50), timestamp=1000 + i) for i in range(count)
        ]
        backplane.produce(name, records)
        started = time.monotonic()
        latest = backplane.read_compacted(name)
        compacted_s = time.monotonic() - started
        consumer = backplane.consumer([name])
        try:
            started = time.monotonic()
            consumer.seek_to_time(1000 + count - 1)
            seek_s = time.monotonic() - started
            assert consumer.position(TopicPartition(name, 0)) == count - 1
        finally:
            consumer.close()
        # Each read really outlasted the timeout, or this test would prove nothing.
        assert compacted_s > timeout_s and seek_s > timeout_s, (compacted_s, seek_s)
        assert {k: r.value for k, r in latest.items()} == {
            b"k%d" % (i % 50): b"%06d" % i for i in range(count - 50, count)
        }
    finally:
        backplane.close()


@contextmanager
def _freezable() -> Iterator[tuple[KafkaBackplane, Callable[[], None]]]:
    """A broker of the test's own, a backplane on it with a 1 s connect timeout, and a
    call that freezes the broker (SIGSTOP: alive, connected, silent)."""
    with TansuBroker.start() as broker:
        backplane = KafkaBackplane(broker.bootstrap, _settings(broker.bootstrap, 1.0))
        try:
            yield backplane, lambda: os.kill(broker.process.pid, signal.SIGSTOP)
        finally:
            # SIGKILL reaches a stopped process; a graceful stop would drain for 5 s, and
            # the broker's memory storage has nothing to save.
            broker.process.kill()
            backplane.close()


def test_a_first_read_of_a_topic_from_a_silent_broker_is_reported_within_the_timeout() -> None:
    """The reader asks for a topic's metadata before its first read of it: that too is
    bounded by the connect timeout, and reported as the broker not answering. (When
    librdkafka already holds the topic's metadata, from a refresh of every topic, the
    fetch meets the silence instead: the same error, its message naming the read.)"""
    with _freezable() as (backplane, freeze):
        name = unique("unseen")
        backplane.create_topic(name, 2, compacted=True)
        freeze()
        started = time.monotonic()
        with pytest.raises(BackplaneUnavailable, match="check that it runs and is reachable"):
            backplane.read_compacted(name)
        assert time.monotonic() - started < 1.0 + 5


def _native_threads() -> int:
    """This process's threads, librdkafka's included (``threading`` sees only Python's)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def test_a_consumer_that_cannot_start_on_a_silent_broker_leaves_no_client_behind() -> None:
    with _freezable() as (backplane, freeze):
        name = unique("unstarted")
        backplane.create_topic(name, 2)
        before = _native_threads()
        freeze()
        errors = []  # kept, as a caller that reports them does: with their frames
        for _ in range(3):  # an operator's retries
            with pytest.raises(BackplaneUnavailable, match="reachable") as failed:
                backplane.consumer((name,), group=None, start="earliest")
            errors.append(failed.value)
        assert _native_threads() <= before


def test_a_broker_that_stops_serving_mid_read_is_reported_within_the_timeout() -> None:
    with _freezable() as (backplane, freeze):
        name = unique("frozen")
        backplane.create_topic(name, 2, compacted=True)
        backplane.produce(name, [OutRecord(b"v", key=b"k")])
        assert len(backplane.read_compacted(name)) == 1  # its metadata is known now
        freeze()
        started = time.monotonic()
        with pytest.raises(BackplaneUnavailable, match="served nothing for 1s"):
            backplane.read_compacted(name)
        assert time.monotonic() - started < 1.0 + 5


def test_an_assignment_that_could_not_start_is_raised_and_taken_again(
    kafka_broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker fails the committed-offsets read of a new assignment (it does during
    a rebalance under load): poll says so once, the member rejoins, and then owns and
    reads every partition. Before, the partitions were consumed behind the consumer's
    back, at offsets it did not track, and a role skipped them until the next rebalance.
    """
    backplane = KafkaBackplane(kafka_broker, _settings(kafka_broker))
    name = unique("unstarted")
    backplane.create_topic(name, 3)
    sent = {f"k{i}".encode() for i in range(30)}
    backplane.produce(name, [OutRecord(b"v", key) for key in sorted(sent)])
    failures = iter([BackplaneUnavailable("kafka broker did not answer (committed offsets)")])
    real = KafkaConsumer._read_committed

    def flaky(
        self: KafkaConsumer, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int | None]:
        for error in failures:  # the first call only
            raise error
        return real(self, partitions)

    monkeypatch.setattr(KafkaConsumer, "_read_committed", flaky)
    consumer = backplane.consumer([name], group=unique("g"))
    raised: list[BackplaneUnavailable] = []
    got: set[bytes] = set()
    try:
        deadline = time.monotonic() + 30
        while got != sent and time.monotonic() < deadline:
            try:
                got |= {r.key or b"" for r in consumer.poll(100, 0.2)}
            except BackplaneUnavailable as exc:
                raised.append(exc)
        assert [str(e) for e in raised] == ["kafka broker did not answer (committed offsets)"]
        assert got == sent
        assert consumer.assignment() == {TopicPartition(name, p) for p in range(3)}
    finally:
        consumer.close()
        backplane.close()


def test_a_step_longer_than_the_session_keeps_the_members_partitions(kafka_broker: str) -> None:
    """librdkafka heartbeats from a thread of its own, so a member busy for longer than
    its session (a takeover on a starved machine) is still alive: it keeps its
    partitions and its commits go through, with no rebalance. Only a member that has not
    polled for ``Settings.max_poll_interval()`` (by default twice the session) is dropped."""
    settings = Settings(backplane=f"kafka://{kafka_broker}", session_timeout_ms=3000)
    backplane = KafkaBackplane(kafka_broker, settings)
    name = unique("slow-step")
    backplane.create_topic(name, 2)
    backplane.produce(name, [OutRecord(b"v", f"a{i}".encode()) for i in range(10)])
    member = backplane.consumer([name], group=unique("g"))
    try:
        assert len(collect(member, 10)) == 10
        owned = member.assignment()
        assert owned == {TopicPartition(name, 0), TopicPartition(name, 1)}
        time.sleep(4.5)  # busy, not polling: longer than the session
        member.commit()  # refused ("unknown member") had the member been dropped
        backplane.produce(name, [OutRecord(b"v", f"b{i}".encode()) for i in range(10)])
        later = collect(member, 10)
        assert sorted(r.key or b"" for r in later) == [f"b{i}".encode() for i in range(10)]
        assert member.assignment() == owned
    finally:
        member.close()
        backplane.close()
