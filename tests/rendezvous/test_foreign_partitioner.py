"""A request from a Kafka client whose partitioner is not murmur2, on a real broker.

librdkafka's default partitioner (``consistent_random``: CRC32 of the key) is what kcat
and confluent-kafka use unless told otherwise. A request it places lands in a partition
other than murmur2's for most keys. With the service's partitions shared between two
rendezvous members, every such request must still meet its scores (written by a real
scorer) at the member that owns its partition, and be answered by the model, once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy.typing as npt
import pytest
from confluent_kafka import KafkaError, Message, Producer

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.partitioner import partition_for
from modelstream.backplane.port import Backplane
from modelstream.backplane.records import now_ms
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.rendezvous.outcome import LATE_HEADER
from modelstream.rendezvous.server import Rendezvous
from modelstream.scoring.config import ScorerConfig
from modelstream.scoring.scorer import Scorer
from modelstream.settings import Settings
from modelstream.testing.sklearn import onnx_classifier
from modelstream.wire.requests import InferenceRequest
from modelstream.wire.results import decode_result
from modelstream.wire.tensors import array_to_tensor
from modelstream.wire.topics import ServiceTopics
from tests.faults.stack import wait_until
from tests.rendezvous.factories import read_all

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

PARTITIONS = 4
REQUESTS = 24


@pytest.fixture
def kafka(kafka_broker: str, tmp_path: Path) -> Iterator[tuple[Backplane, Settings, str]]:
    url = f"kafka://{kafka_broker}"
    settings = Settings(
        backplane=url,
        default_partitions=PARTITIONS,
        session_timeout_ms=3000,
        model_store_dir=str(tmp_path / "store"),
    )
    backplane = open_backplane(url, settings)
    yield backplane, settings, kafka_broker
    backplane.close()


def test_requests_placed_by_librdkafka_s_default_partitioner_are_answered_by_the_model(
    kafka: tuple[Backplane, Settings, str],
) -> None:
    backplane, settings, bootstrap = kafka
    service = f"foreign-{uuid.uuid4().hex[:6]}"
    topics = ServiceTopics(service)
    model, data = onnx_classifier("logreg", features=4)
    registry = Registry(backplane, settings)
    registry.publish(service, "lr", model, format="onnx")
    registry.deploy(service, ModelRef("lr", 1), partitions=PARTITIONS)
    config = ScorerConfig(poll_timeout_s=0.05)
    members = [Rendezvous(backplane, settings, service) for _ in range(2)]
    with Scorer(backplane, settings, service, "lr", config=config) as scorer:
        try:
            for member in members:
                member.start()
            assert scorer.wait_ready(60)
            wait_until(
                "the partitions shared between the two members",
                lambda: sorted(len(m.owned) for m in members) == [2, 2],
                60,
            )
            placed = send_as_librdkafka(bootstrap, topics.requests, service, data.x[:REQUESTS])
            records = read_all(backplane, topics.results, expect=REQUESTS, timeout=60, settle=1)
        finally:
            for member in members:
                member.stop()
    # The test means something only if the client placed requests where murmur2 would not.
    assert sum(p != partition_for(rid.encode(), PARTITIONS) for rid, p in placed.items()) > 2
    decided = [r for r in records if r.header(LATE_HEADER) is None]
    results = {decode_result(r.value).request_id: (r, decode_result(r.value)) for r in decided}
    assert len(decided) == REQUESTS and sorted(results) == sorted(placed)
    not_by_model = {rid: result for rid, (_, result) in results.items() if result.ref != "lr@1"}
    assert not not_by_model, f"answered without the model: {not_by_model}"
    # The result is where a member taking the partition over looks for it.
    assert {rid: record.partition for rid, (record, _) in results.items()} == placed


def send_as_librdkafka(
    bootstrap: str, topic: str, service: str, rows: npt.NDArray[Any]
) -> dict[str, int]:
    """Produce one request per row with confluent-kafka's default partitioner; return
    each request id's partition, from the delivery reports."""
    producer = Producer({"bootstrap.servers": bootstrap})  # consistent_random: CRC32
    placed: dict[str, int] = {}

    def delivered(err: KafkaError | None, message: Message) -> None:
        assert err is None, err
        placed[(message.key() or b"").decode()] = message.partition() or 0

    for i, row in enumerate(rows):
        now = now_ms()
        request = InferenceRequest(
            f"crc-{i}-{uuid.uuid4().hex[:6]}",
            service,
            now,
            now + 20_000,
            (array_to_tensor("input", row.reshape(1, -1)),),
            sent_at=now,
        )
        producer.produce(topic, request.encode(), request.id.encode(), on_delivery=delivered)
    assert producer.flush(30) == 0, "the requests were not all delivered"
    return placed
