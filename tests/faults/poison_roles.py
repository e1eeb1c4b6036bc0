"""The roles :mod:`tests.faults.test_poison` poisons, and the helpers its tests share.

:func:`running_roles` starts, on a SQLite backplane, :class:`~modelstream.gateway.serving.Serving`
(gateway, rendezvous, scorers, featurizer, monitor) for ``plain`` (a real ONNX classifier)
and ``trucks`` (a feature set and a real ONNX model echoing its features), and an
:class:`~modelstream.archive.archiver.Archiver` of ``plain``. :func:`poison` produces the
three poison records of a topic (truncated JSON, valid JSON of the wrong schema, 20 MB);
:func:`dead_letters` reads what the roles dead-lettered, by source record.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from modelstream.archive.archiver import Archiver
from modelstream.backplane.factory import open_backplane
from modelstream.backplane.port import Backplane
from modelstream.backplane.records import Delivered, OutRecord, TopicPartition
from modelstream.features.role import FeaturizerRole, store_path
from modelstream.gateway.serving import Serving
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.models.spec import load_spec
from modelstream.settings import Settings
from modelstream.testing.sklearn import onnx_classifier
from modelstream.wire.codec import MAX_RECORD_BYTES
from modelstream.wire.deadletter import KEPT_BYTES
from modelstream.wire.topics import ServiceTopics
from tests.features.helpers import TRUCKS_SERVICE_YAML, echo_model

PLAIN, TRUCKS = ServiceTopics("plain"), ServiceTopics("trucks")
HUGE_BYTES = 20 * 1024 * 1024
HUGE = b'{"padding": "' + b"x" * HUGE_BYTES + b'"}'
WAIT_S = 60.0
SYNTAX_REASON = re.compile(r"(not valid|invalid) json", re.IGNORECASE)
FIELD_NAMED = re.compile(r"'[a-z_]+'")  # e.g. "request field 'inputs' must be a list ..."
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
    # per source, each dead-letter copy's (x-original-size header, length of its value)
    cuts: dict[tuple[str, int, int], list[tuple[bytes | None, int]]] = field(default_factory=dict)


@contextlib.contextmanager
def running_roles(directory: Path) -> Iterator[Stack]:
    """The roles of both services, started in-process over SQLite in ``directory``."""
    (directory / "trucks-features.yaml").write_text(FEATURES_YAML)
    (directory / "echo.onnx").write_bytes(echo_model(4))
    (directory / "trucks.yaml").write_text(TRUCKS_SERVICE_YAML)
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
    assert len(HUGE) > MAX_RECORD_BYTES
    records = [
        OutRecord(valid[: len(valid) // 2], key),  # truncated JSON
        OutRecord(orjson.dumps(WRONG_SCHEMA), key),
        OutRecord(HUGE, key),
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
                cut = (r.header("x-original-size"), len(r.value))
                roles.cuts.setdefault(source, []).append(cut)
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
    assert all(SYNTAX_REASON.search(reason) for reason in truncated), truncated
    # a schema complaint names the field at fault (and is no syntax or size complaint)
    assert all(
        FIELD_NAMED.search(r) and not SYNTAX_REASON.search(r) and "exceeds" not in r for r in schema
    ), schema
    assert all("exceeds" in reason for reason in huge), huge
    # the huge record's copies keep its first 64 KiB and say how big it was
    assert set(roles.cuts[wanted[2]]) == {(str(len(HUGE)).encode(), KEPT_BYTES)}
    assert all(size is None for size, _ in roles.cuts[wanted[0]] + roles.cuts[wanted[1]])
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


def restart_featurizer(roles: Stack, partition: int, entity: str) -> bytes:
    """Stop the featurizer (it checkpoints), delete its local state store (so restore
    reads the changelog, as on Kafka), and start a new one in its place; the JSON of
    ``entity``'s state in ``partition`` when the old one stopped."""
    (role,) = roles.serving.featurizers
    before = set(threading.enumerate())
    role.stop()
    ended = before - set(threading.enumerate())
    path = store_path(roles.serving.settings, role.service)
    assert path is not None
    for file in path.parent.glob(path.name + "*"):
        file.unlink()
    deployment = Registry(roles.backplane, roles.serving.settings).deployment(role.service)
    roles.serving.featurizers[0] = FeaturizerRole(roles.backplane, roles.serving.settings,
                                                  deployment).start()  # fmt: skip
    roles.threads = [t for t in roles.threads if t not in ended] + [
        t for t in threading.enumerate() if t not in before
    ]
    return orjson.dumps(role.featurizer.engine.entity_json(partition, entity))
