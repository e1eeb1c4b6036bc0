"""Poison records on every topic the roles read, under steady load, on SQLite and Kafka.

On the process-per-role stack of :mod:`tests.faults.stack` (both services, every role a process of
its own), with the steady stream and HTTP load of :class:`~.phase.Steady` running, three
poison records go onto each topic a role reads: truncated JSON, valid JSON of no topic's
schema (on ``events``, where this stack's feature set only counts, JSON that is no
object), and a huge record. What is huge depends on the engine: on SQLite, 20 MB (above
``wire.codec.MAX_RECORD_BYTES``, refused for its size by every decoder); on Kafka, whose
brokers refuse more than about 1 MB, a record exactly at the backplane's record limit
(valid JSON of the wrong schema), whose dead-letter copy, headers added, would no longer
fit and so is cut.

Checked as an operator would:

* each poison record has a dead-letter copy from every role that reads its topic, with
  a reason (syntax, the field at fault, or the size), and huge copies cut to
  ``KEPT_BYTES`` with ``x-original-size``;
* the load goes on: 0 acknowledged requests lost, 0 answered twice, and every
  acknowledged request answered by a model (no poison record delays an answer into a
  deadline fallback);
* no role process exited.

Readers per topic in this stack (the monitor does not run here): ``plain.requests``:
scorer, rendezvous, archiver; ``plain.scores``: rendezvous, archiver; ``plain.results``
and ``plain.labels``: archiver; ``feat.events``: featurizer; ``feat.requests``: scorer,
rendezvous; ``feat.scores``: rendezvous.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any

import orjson
import pytest

from modelstream.backplane.records import Delivered, OutRecord
from modelstream.wire.codec import MAX_RECORD_BYTES
from modelstream.wire.deadletter import KEPT_BYTES
from modelstream.wire.topics import ServiceTopics
from tests.faults.conftest import Reliability
from tests.faults.phase import Steady, counts, not_by_model, settle
from tests.faults.poison_roles import FIELD_NAMED, SYNTAX_REASON, WRONG_SCHEMA
from tests.faults.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SQLITE_HUGE = 20 * 1024 * 1024


def readers(stack: Stack) -> dict[str, int]:
    plain, feat = ServiceTopics(stack.plain), ServiceTopics(stack.feat)
    return {
        plain.requests: 3,
        plain.scores: 2,
        plain.results: 1,
        plain.labels: 1,
        feat.events: 1,
        feat.requests: 2,
        feat.scores: 1,
    }


def named(stack: Stack, topic: str) -> str:
    """``plain.requests`` for ``<plain service>.requests`` (the report's names)."""
    service, kind = topic.split(".", 1)
    return f"{'plain' if service == stack.plain else 'feat'}.{kind}"


def is_events(topic: str) -> bool:
    # The stack's feature set only counts events, so any JSON object is an event: the
    # wrong schema there is JSON that is no object.
    return topic.endswith(".events")


def huge_record(stack: Stack, topic: str) -> OutRecord:
    """The engine's huge poison for ``topic`` (see the module docstring)."""
    key = poison_key(topic)
    if stack.url.startswith("sqlite"):
        size = SQLITE_HUGE
        assert size > MAX_RECORD_BYTES
    else:
        size = stack.backplane.max_record_bytes - len(key)
    start, end = (b'["', b'"]') if is_events(topic) else (b'{"padding": "', b'"}')
    return OutRecord(start + b"x" * (size - len(start) - len(end)) + end, key)


def poison_key(topic: str) -> bytes:
    return f"poison-{topic}".encode()


def poison(stack: Stack, topic: str) -> list[Delivered]:
    key = poison_key(topic)
    valid = b'{"id": "x", "service": "s", "inputs": []}'
    schema = [WRONG_SCHEMA] if is_events(topic) else WRONG_SCHEMA
    records = [
        OutRecord(valid[: len(valid) // 2], key),
        OutRecord(orjson.dumps(schema), key),
        huge_record(stack, topic),
    ]
    return [stack.backplane.produce(topic, [r])[0] for r in records]


def copies(stack: Stack) -> dict[tuple[str, int, int], list[dict[str, bytes]]]:
    """Every dead-letter copy of both services, by source (topic, partition, offset),
    with the copy's headers and the length of its value under ``len``."""
    topics = [ServiceTopics(s).dead_letter for s in (stack.plain, stack.feat)]
    for topic in topics:
        stack.backplane.create_topic(topic)
    found: dict[tuple[str, int, int], list[dict[str, bytes]]] = {}
    # Read up to the end offsets of now (an empty poll on Kafka does not mean the end).
    left = {
        (topic, p.partition): p.end
        for topic in topics
        for p in stack.backplane.describe_topic(topic).partitions
        if p.records
    }
    give_up = time.monotonic() + 30
    consumer = stack.backplane.consumer(topics, start="earliest")
    try:
        while left and time.monotonic() < give_up:
            for r in consumer.poll(500, timeout=0.2):
                if left.get((r.topic, r.partition), 0) <= r.offset + 1:
                    left.pop((r.topic, r.partition), None)
                headers = dict(r.headers) | {"len": str(len(r.value)).encode()}
                source = (
                    headers.get("x-source-topic", b"").decode(),
                    int(headers.get("x-source-partition", b"-1")),
                    int(headers.get("x-source-offset", b"-1")),
                )
                found.setdefault(source, []).append(headers)
    finally:
        consumer.close()
    return found


def test_poison_on_every_topic_under_load_is_dead_lettered_and_loses_nothing(
    stack: Stack, reliability: Reliability, request: pytest.FixtureRequest
) -> None:
    stack.check_alive()
    wanted = readers(stack)
    poisoned: dict[str, list[Delivered]] = {}
    with Steady(stack, tag="poison") as load:
        load.wait_acked(120, timeout_s=30)
        for topic in wanted:
            poisoned[topic] = poison(stack, topic)
        load.pause(2.0)
    acked = load.acked()
    settle(stack, acked)
    figures: dict[str, Any] = counts(stack, load)

    def where(d: Delivered) -> tuple[str, int, int]:
        return (d.topic, d.partition, d.offset)

    assert figures["acknowledged_stream"] > 0 and figures["acknowledged_http"] > 0
    assert figures["lost"] == 0, f"acknowledged requests without an answer: {figures}"
    assert figures["answered_twice"] == 0, f"requests answered twice: {figures}"
    assert figures["replied_twice"] == 0, f"requests replied to twice: {figures}"
    assert not not_by_model(stack, acked), figures

    def shortfall() -> dict[str, list[int]]:
        """Per topic, the copies each poison record has, where fewer than its readers."""
        found = copies(stack)
        counted = {t: [len(found.get(where(d), [])) for d in ds] for t, ds in poisoned.items()}
        return {t: n for t, n in counted.items() if min(n) < wanted[t]}

    give_up = time.monotonic() + 60
    while (short := shortfall()) and time.monotonic() < give_up:
        time.sleep(0.5)
    assert not short, f"dead-letter copies (per poison record) fewer than readers: {short}"
    found = copies(stack)
    per_topic = Counter({t: sum(len(found[where(d)]) for d in ds) for t, ds in poisoned.items()})
    figures |= {
        "backplane": stack.url.split(":", 1)[0],
        "injected": "truncated JSON, wrong schema and a huge record "
        + ("(20 MB)" if stack.url.startswith("sqlite") else "(at the 1 MB record limit)")
        + " on each of "
        + ", ".join(named(stack, t) for t in wanted),
        "dead_letter_copies": {named(stack, t): n for t, n in per_topic.items()},
    }
    reliability.record(request.node.nodeid.split("::")[-1], figures)

    for topic, (truncated, schema, huge) in poisoned.items():
        reasons = [[h["x-reason"].decode() for h in found[where(d)]] for d in (truncated, schema)]
        assert all(SYNTAX_REASON.search(r) for r in reasons[0]), (topic, reasons[0])
        schema_reason = re.compile("JSON object") if is_events(topic) else FIELD_NAMED
        assert all(schema_reason.search(r) for r in reasons[1]), (topic, reasons[1])
        size = str(len(huge_record(stack, topic).value)).encode()
        for headers in found[where(huge)]:
            # cut to its first 64 KiB, saying how big it was
            assert (headers["len"], headers.get("x-original-size")) == (
                str(KEPT_BYTES).encode(),
                size,
            ), (topic, headers["x-reason"])
    stack.check_alive()
