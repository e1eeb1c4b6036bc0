"""Poison records on every topic a role reads: each goes to ``<service>.dead-letter`` with
its reason, the records around it are processed, and no role's thread dies.

The real roles run on a SQLite backplane: :class:`~modelstream.gateway.serving.Serving`
(gateway, rendezvous, scorers, featurizer, monitor) for two services, ``plain`` (a real
ONNX classifier) and ``trucks`` (a feature set and a real ONNX model echoing its
features), and an :class:`~modelstream.archive.archiver.Archiver` of ``plain``. Onto each
topic go three poison records between good ones: truncated JSON, valid JSON of the wrong
schema, and a record of 20 MB (above ``wire.codec.MAX_RECORD_BYTES``).

Every role that reads a topic dead-letters what it cannot read, so a poison record has
one dead-letter copy per reading role (the ``x-source-*`` headers tell which record it
was): four on ``requests`` (scorer, rendezvous, archiver, monitor), three on ``scores``,
two on ``results`` and ``labels``, one on ``events`` (the featurizer), and at least one
on ``models`` and ``deployment`` (each registry follower reads those compacted topics
whole and dead-letters on its own: one copy per follower, again after a restart, until
a good record of the same key replaces the poison).

A gateway's reply topic is the exception, on purpose: the reply listener logs and skips
a reply it cannot read (only replies for a request it waits for are decoded at all);
it does not dead-letter, because the reply topic is the gateway's private return channel
read from its end without a group, and the same answer is durable on ``results``, where
the archiver and the monitor dead-letter a broken one. A request whose reply is broken
is answered by its deadline as if no reply came.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from modelstream.archive.archiver import Archiver
from modelstream.backplane.factory import open_backplane
from modelstream.backplane.port import Backplane
from modelstream.backplane.records import Delivered, OutRecord, TopicPartition, now_ms
from modelstream.gateway.serving import Serving
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.models.spec import load_spec
from modelstream.settings import Settings
from modelstream.testing.sklearn import onnx_classifier
from modelstream.wire.codec import MAX_RECORD_BYTES
from modelstream.wire.labels import Label
from modelstream.wire.topics import ServiceTopics
from tests.features.helpers import echo_model

pytestmark = pytest.mark.integration

PLAIN, TRUCKS = ServiceTopics("plain"), ServiceTopics("trucks")
HUGE_BYTES = 20 * 1024 * 1024
WAIT_S = 60.0
# Valid JSON that no topic's schema accepts (for events: a temperature that is no number).
WRONG_SCHEMA = {"id": 7, "service": 7, "temp": "hot", "inputs": "none", "hello": [1, 2]}
FEATURES_YAML = """
name: trucks
version: 1
features:
  - {name: events, agg: count, window: {tumbling: 60000}}
  - {name: temp_mean, field: temp, agg: mean, window: {tumbling: 60000}}
  - {name: temp_max, field: temp, agg: max, window: {tumbling: 60000}}
  - {name: temp_last, field: temp, agg: last, window: {tumbling: 60000}}
"""
TRUCKS_YAML = """
service: trucks
partitions: 2
deadline_ms: 10000
features: trucks-features.yaml
models:
  - {name: echo, file: echo.onnx, format: onnx, role: champion}
"""


@dataclass
class Stack:
    backplane: Backplane
    serving: Serving
    archiver: Archiver
    client: httpx.Client
    features: list[float]
    threads: list[threading.Thread]
    poisoned: dict[str, list[Delivered]] = field(default_factory=dict)
    sequence: Iterator[int] = field(default_factory=lambda: iter(range(1_000_000)))
    dead: dict[str, dict[tuple[str, int, int], list[str]]] = field(default_factory=dict)
    dead_read: dict[str, dict[TopicPartition, int]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def roles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("poison")
    (directory / "trucks-features.yaml").write_text(FEATURES_YAML)
    (directory / "echo.onnx").write_bytes(echo_model(4))
    (directory / "trucks.yaml").write_text(TRUCKS_YAML)
    settings = Settings(backplane=f"sqlite://{directory / 'bp'}", default_partitions=2)
    backplane = open_backplane(settings.backplane, settings)
    registry = Registry(backplane, settings)
    model, data = onnx_classifier("logreg", seed=0)
    registry.publish("plain", "lr", model, format="onnx")
    registry.deploy("plain", ModelRef("lr", 1), deadline_ms=10_000)
    registry.apply(load_spec(directory / "trucks.yaml"))
    serving = Serving(
        backplane,
        settings,
        ["plain", "trucks"],
        host="127.0.0.1",
        port=0,
        monitor=True,
        archiver=False,  # the test runs its own archiver of "plain", to its own directory
    )
    archiver = Archiver(backplane, "plain", directory / "archive", flush_seconds=0.2)
    stop = threading.Event()
    archiving = threading.Thread(target=archiver.run, args=(stop, 0.05), name="archiver")
    serving.start(load_timeout=30)
    archiving.start()
    try:
        assert serving.server is not None
        assert all(r.wait_until_assigned(10) for r in serving.rendezvous)
        with httpx.Client(base_url=serving.server.url, timeout=15) as client:
            yield Stack(
                backplane,
                serving,
                archiver,
                client,
                [float(v) for v in data.x[0]],
                [t for t in threading.enumerate() if t is not threading.current_thread()],
            )
    finally:
        stop.set()
        archiving.join(30)
        serving.stop()
        backplane.close()


# -- helpers --------------------------------------------------------------------------


def infer(roles: Stack, service: str = "plain", **parameters: Any) -> dict[str, Any]:
    """One request over HTTP, which must be answered by a model (not a fallback)."""
    rid = f"good-{next(roles.sequence)}"
    if service == "plain":
        inputs = [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": roles.features}]
    else:
        inputs = [{"name": "reading", "datatype": "FP32", "shape": [1, 1], "data": [0.0]}]
    body = {"id": rid, "inputs": inputs, "parameters": parameters}
    response = roles.client.post(f"/v2/models/{service}/infer", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert answer["id"] == rid
    return answer


def poison(roles: Stack, topic: str, key: bytes, valid: bytes) -> None:
    """Produce the three poison records of ``topic`` (keyed ``key``), remembering them."""
    huge = b'{"padding": "' + b"x" * HUGE_BYTES + b'"}'
    assert len(huge) > MAX_RECORD_BYTES
    records = [
        OutRecord(valid[: len(valid) // 2], key),  # truncated JSON
        OutRecord(orjson.dumps(WRONG_SCHEMA), key),
        OutRecord(huge, key),
    ]
    delivered = [roles.backplane.produce(topic, [r])[0] for r in records]
    roles.poisoned.setdefault(topic, []).extend(delivered)


def dead_letters(roles: Stack, service: ServiceTopics) -> dict[tuple[str, int, int], list[str]]:
    """Reasons per source (topic, partition, offset) on ``service``'s dead-letter topic
    (read on from where the last call stopped)."""
    found = roles.dead.setdefault(service.service, {})
    consumer = roles.backplane.consumer([service.dead_letter], start="earliest")
    try:
        seen = roles.dead_read.get(service.service)
        if seen:
            for tp, offset in seen.items():
                consumer.seek(tp, offset)
        while batch := consumer.poll(20, timeout=0.05):
            for r in batch:
                source = (
                    (r.header("x-source-topic") or b"").decode(),
                    int(r.header("x-source-partition") or -1),
                    int(r.header("x-source-offset") or -1),
                )
                found.setdefault(source, []).append((r.header("x-reason") or b"").decode())
                roles.dead_read.setdefault(service.service, {})[r.topic_partition] = r.offset + 1
    finally:
        consumer.close()
    return found


def eventually(check: Callable[[], bool], what: str) -> None:
    give_up = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < give_up, f"not within {WAIT_S} s: {what}"
        time.sleep(0.2)


def assert_dead_lettered(roles: Stack, topic: str, copies: int, exact: bool = True) -> None:
    """Each poison record of ``topic`` has ``copies`` dead-letter copies, with reasons."""
    service = PLAIN if topic.startswith("plain.") else TRUCKS
    wanted = [(d.topic, d.partition, d.offset) for d in roles.poisoned[topic]]

    def done() -> bool:
        found = dead_letters(roles, service)
        return all(len(found.get(w, [])) >= copies for w in wanted)

    eventually(done, f"{copies} dead-letter copies of each poison record of {topic}")
    found = dead_letters(roles, service)
    truncated, schema, huge = (found[w] for w in wanted)
    assert all("json" in reason.lower() for reason in truncated), truncated
    assert all(reason for reason in schema), schema
    assert all("exceeds" in reason for reason in huge), huge
    if exact:
        assert [len(found[w]) for w in wanted] == [copies] * 3


def assert_no_thread_died(roles: Stack) -> None:
    # The SQLite engine's watcher thread runs only while some consumer waits for writes
    # from other processes, and ends on purpose when none does: it is not a role.
    dead = [
        t.name
        for t in roles.threads
        if not t.is_alive() and not t.name.startswith("sqlite-watcher")
    ]
    assert not dead, f"threads died: {dead}"
    assert all(r.failure is None for r in roles.serving.rendezvous)
    assert all(m.failure is None for m in roles.serving.monitors)


# -- the topics -----------------------------------------------------------------------


def test_poison_requests_are_dead_lettered_by_every_reader(roles: Stack) -> None:
    infer(roles)
    poison(roles, PLAIN.requests, b"poison-request", b'{"id": "x", "service": "plain"}')
    infer(roles)
    assert_dead_lettered(roles, PLAIN.requests, copies=4)  # scorer, rendezvous, archiver, monitor
    infer(roles)
    assert_no_thread_died(roles)


def test_poison_scores_are_dead_lettered_and_good_scores_still_count(roles: Stack) -> None:
    infer(roles)
    poison(roles, PLAIN.scores, b"poison-score", b'{"request_id": "x", "model": "lr"}')
    answer = infer(roles)
    assert answer["model_version"] == "lr@1"
    assert_dead_lettered(roles, PLAIN.scores, copies=3)  # rendezvous, archiver, monitor
    assert_no_thread_died(roles)


def test_poison_results_are_dead_lettered(roles: Stack) -> None:
    infer(roles)
    poison(roles, PLAIN.results, b"poison-result", b'{"request_id": "x", "service": "plain"}')
    infer(roles)
    assert_dead_lettered(roles, PLAIN.results, copies=2)  # archiver, monitor
    assert_no_thread_died(roles)


def test_poison_labels_are_dead_lettered_and_good_labels_are_joined(roles: Stack) -> None:
    (monitor,) = [m for m in roles.serving.monitors if m.service == "plain"]
    before = monitor.snapshot().records.get("labels", 0)
    ids = [infer(roles)["id"] for _ in range(4)]
    label = Label("plain", 1, now_ms(), request_id=ids[0]).encode()

    def send(rid: str) -> None:
        record = OutRecord(Label("plain", 1, now_ms(), request_id=rid).encode(), rid.encode())
        roles.backplane.produce(PLAIN.labels, [record])

    send(ids[0])
    send(ids[1])
    poison(roles, PLAIN.labels, b"poison-label", label)
    send(ids[2])
    send(ids[3])
    assert_dead_lettered(roles, PLAIN.labels, copies=2)  # archiver, monitor
    eventually(
        lambda: monitor.snapshot().records.get("labels", 0) >= before + 4,
        "the monitor reads the four good labels",
    )
    assert_no_thread_died(roles)


def test_poison_events_are_dead_lettered_by_the_featurizer(roles: Stack) -> None:
    t = now_ms()
    good = [OutRecord(orjson.dumps({"temp": 70.0 + i}), b"truck-1", (), t - 1000) for i in range(2)]
    roles.backplane.produce(TRUCKS.events, good[:1])
    poison(roles, TRUCKS.events, b"truck-1", orjson.dumps({"temp": 1.0}))
    roles.backplane.produce(TRUCKS.events, good[1:])
    answer = infer(roles, "trucks", entity="truck-1")
    assert answer["model_version"] == "echo@1"
    assert_dead_lettered(roles, TRUCKS.events, copies=1)  # the featurizer
    (role,) = roles.serving.featurizers
    assert role.featurizer.stats.dead_letters >= 3
    assert_no_thread_died(roles)


def test_poison_replies_are_skipped_and_requests_still_answered(roles: Stack) -> None:
    topics = [s.name for s in roles.backplane.list_topics() if ".replies." in s.name]
    assert {t.split(".")[0] for t in topics} == {"plain", "trucks"}
    infer(roles)
    huge = b"[" + b"1," * (HUGE_BYTES // 2) + b"1]"
    for topic in topics:
        for key in (b"poison-reply", b"good-unknown"):
            for value in (b'{"request_id": ', orjson.dumps(WRONG_SCHEMA), huge):
                roles.backplane.produce(topic, [OutRecord(value, key)])
    for _ in range(3):
        infer(roles)
        infer(roles, "trucks", entity="truck-2")
    assert_no_thread_died(roles)


def test_poison_models_and_deployments_leave_the_followers_working(roles: Stack) -> None:
    registry = Registry(roles.backplane, roles.serving.settings)
    descriptor = orjson.dumps({"service": "plain", "name": "lr", "version": 9})
    poison(roles, PLAIN.models, b"lr@9", descriptor)
    # Keyed by the service: the latest deployment record is now poison; the last valid
    # one stays in force.
    poison(roles, PLAIN.deployment, b"plain", b'{"service": "plain", "models": []}')
    infer(roles)
    assert_dead_lettered(roles, PLAIN.models, copies=1, exact=False)
    assert_dead_lettered(roles, PLAIN.deployment, copies=1, exact=False)
    champion = registry.deployment("plain").champion
    assert champion is not None and champion.ref == ModelRef("lr", 1)
    # Good records after the poison: a new version, deployed, answers.
    model, _ = onnx_classifier("logreg", seed=1)
    registry.publish("plain", "lr", model, format="onnx")
    registry.deploy("plain", ModelRef("lr", 2), deadline_ms=10_000)
    eventually(lambda: infer(roles)["model_version"] == "lr@2", "lr@2 answers")
    assert_no_thread_died(roles)


def test_figures(roles: Stack, reliability: Any, request: pytest.FixtureRequest) -> None:
    """Records, per poisoned topic, the poison records and their dead-letter copies."""
    found = {**dead_letters(roles, PLAIN), **dead_letters(roles, TRUCKS)}
    copies = Counter({t: sum(len(found.get((d.topic, d.partition, d.offset), [])) for d in ds)
                      for t, ds in roles.poisoned.items()})  # fmt: skip
    reliability.record(
        request.node.nodeid,
        {
            "backplane": "sqlite",
            "injected": "truncated JSON, wrong schema, 20 MB record on each topic",
            "topics": {
                topic: {"poisoned": len(ds), "dead_letter_copies": copies[topic]}
                for topic, ds in sorted(roles.poisoned.items())
            },
            "reply_topics": "poison skipped and logged (not dead-lettered, by design)",
        },
    )
    assert all(copies[t] >= len(ds) for t, ds in roles.poisoned.items())
