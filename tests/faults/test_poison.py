"""Poison records on every topic a role reads: each goes to ``<service>.dead-letter`` with
its reason, the records around it are processed, and no role's thread dies.

The real roles run on a SQLite backplane: :class:`~modelstream.gateway.serving.Serving`
(gateway, rendezvous, scorers, featurizer, monitor) for two services, ``plain`` (a real
ONNX classifier) and ``trucks`` (a feature set and a real ONNX model echoing its
features), and an :class:`~modelstream.archive.archiver.Archiver` of ``plain``. Onto each
topic go three poison records between good ones: truncated JSON, valid JSON of the wrong
schema, and a record of 20 MB (above ``wire.codec.MAX_RECORD_BYTES``).

A poison record has one dead-letter copy per role reading its topic (``x-source-*``
headers say which record): four on ``requests`` (scorer, rendezvous, archiver, monitor),
three on ``scores``, two on ``results`` and ``labels``, one on ``events`` and on
``features-changelog`` (the featurizer, the latter as its restart restores), and at
least one on ``models`` and ``deployment`` (each registry follower reads those compacted
topics whole and dead-letters on its own, again after a restart, until a good record of
the same key replaces the poison).

A gateway's reply topic is the exception, on purpose: the reply listener logs and skips
a reply it cannot read (only replies for a request it waits for are decoded at all);
it does not dead-letter, because the reply topic is the gateway's private return channel
read from its end without a group, and the same answer is durable on ``results``, where
the archiver and the monitor dead-letter a broken one. A request whose reply is broken
is answered by its deadline as if no reply came.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from modelstream.backplane.partitioner import partition_for
from modelstream.backplane.records import OutRecord, now_ms
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.testing.sklearn import onnx_classifier
from modelstream.wire.labels import Label

from .poison_roles import (
    HUGE,
    HUGE_BYTES,
    PLAIN,
    TRUCKS,
    WRONG_SCHEMA,
    Stack,
    assert_dead_lettered,
    assert_no_thread_died,
    dead_letters,
    eventually,
    infer,
    poison,
    restart_featurizer,
    running_roles,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def roles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_roles(tmp_path_factory.mktemp("poison")) as running:
        yield running


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


def test_poison_changelog_is_dead_lettered_and_restore_goes_on(roles: Stack) -> None:
    entity, partitions = "truck-7", roles.serving.settings.default_partitions
    home = partition_for(entity.encode(), partitions)
    t = now_ms()
    events = [OutRecord(b'{"temp": %d}' % i, entity.encode(), (), t - 9 + i) for i in range(3)]
    roles.backplane.produce(TRUCKS.events, events)
    assert infer(roles, "trucks", entity=entity)["model_version"] == "echo@1"
    # One of each kind of poison, under three keys (compaction keeps one per key): the
    # other partition's checkpoint marker, and records of entities of both partitions.
    changelog = TRUCKS.features_changelog
    records = [
        OutRecord(b'{"epoch": 1, "offset": 7, "me', b"\0checkpoint/%d" % (1 - home)),
        OutRecord(orjson.dumps(WRONG_SCHEMA), b"%d/truck-8" % home),
        OutRecord(HUGE, b"%d/truck-9" % (1 - home)),
    ]
    roles.poisoned[changelog] = [roles.backplane.produce(changelog, [r])[0] for r in records]
    # rebuilt from the changelog: the entity's state is what the old featurizer held
    state = restart_featurizer(roles, home, entity)
    assert orjson.loads(state or b"null"), "the events made no state"
    (role,) = roles.serving.featurizers
    eventually(lambda: len(role.featurizer.partitions) == partitions, "every partition restored")
    assert orjson.dumps(role.featurizer.engine.entity_json(home, entity)) == state
    answer = infer(roles, "trucks", entity=entity)  # enriched: the echo model needs features
    assert answer["model_version"] == "echo@1", answer
    assert_dead_lettered(roles, changelog, copies=1)
    found = dead_letters(roles, TRUCKS)
    marker, schema, _ = ((d.topic, d.partition, d.offset) for d in roles.poisoned[changelog])
    assert "checkpoint marker" in found[marker][0], found[marker]
    assert "lacks required field 'p'" in found[schema][0], found[schema]
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
