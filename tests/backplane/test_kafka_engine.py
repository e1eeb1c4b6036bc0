"""Kafka-engine behaviour beyond the shared contract: a dead broker, foreign producers."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer

from modelstream.backplane.kafka.engine import KafkaBackplane
from modelstream.backplane.partitioner import partition_for
from modelstream.backplane.records import OutRecord
from modelstream.errors import BackplaneUnavailable
from modelstream.settings import Settings
from modelstream.testing.broker import free_port
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
