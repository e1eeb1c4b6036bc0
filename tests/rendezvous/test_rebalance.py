"""The rendezvous while its group rebalances: nothing it held is dropped, on every engine.

A second member joins while the first holds open mailboxes on both partitions. On Kafka
a rebalance revokes every partition of a member and assigns its share again later
(the eager protocol), so between the two polls the member owns nothing and forgets what its
mailboxes held. A partition that comes back to the same member must then be read again from
the group's committed offset, which the rendezvous never moves past an open mailbox: a
member that went on from where it had read would skip the requests it was holding, and
they would never be answered.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import msgspec
import pytest

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord, now_ms
from modelstream.models.codec import encode_deployment
from modelstream.models.deployment import Role
from modelstream.rendezvous.outcome import LATE_HEADER
from modelstream.rendezvous.server import Rendezvous
from modelstream.settings import Settings
from modelstream.testing.broker import TansuBroker
from modelstream.wire.results import decode_result
from modelstream.wire.topics import ServiceTopics
from tests.faults.stack import wait_until
from tests.rendezvous.factories import deployment, read_all, request, score

pytestmark = pytest.mark.integration

CHAMP = "gbm@3"
HELD = 24  # requests held open across the rebalance, on both partitions


@pytest.fixture(params=["memory", "sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Backplane, Settings, ServiceTopics]]:
    """A backplane, and a service of this test's own.

    On Kafka, a tansu broker of its own: the fault tests' stack, started later on the
    session's broker, was not ready within 180 s after this test had run there (twice;
    not yet understood, see the closing note of stop 21).
    """
    with ExitStack() as stack:
        if request.param == "kafka":
            url = stack.enter_context(TansuBroker.start()).url
        else:
            url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/bp"
        yield from _opened(url)


def _opened(url: str) -> Iterator[tuple[Backplane, Settings, ServiceTopics]]:
    settings = Settings(backplane=url, default_partitions=2, session_timeout_ms=3000)
    backplane = open_backplane(url, settings)
    topics = ServiceTopics(f"rebalance-{uuid.uuid4().hex[:6]}")
    for topic in (topics.requests, topics.scores, topics.results):
        backplane.create_topic(topic, 2)
    yield backplane, settings, topics
    backplane.close()


def test_requests_held_across_a_rebalance_are_answered_by_the_model(
    engine: tuple[Backplane, Settings, ServiceTopics],
) -> None:
    backplane, settings, topics = engine
    service = topics.service
    backplane.create_topic(topics.deployment, 1, compacted=True)
    dep = replace(deployment((CHAMP, Role.CHAMPION, None)), service=service)
    backplane.produce(topics.deployment, [OutRecord(encode_deployment(dep), service.encode())])
    first = Rendezvous(backplane, settings, service)
    first.start()
    second: Rendezvous | None = None
    try:
        wait_until("both partitions at the first member", lambda: first.owned == {0, 1}, 30)
        ids = [f"held-{i}" for i in range(HELD)]
        for rid in ids:  # no score yet: the champion is waited for until the deadline
            req = msgspec.structs.replace(request(rid, now_ms(), 60_000), service=service)
            backplane.produce(topics.requests, [OutRecord(req.encode(), req.key)])
        wait_until("every request read", lambda: first.stats["requests"] >= HELD, 30)

        # A second member joins: each ends with one partition, and the first member's
        # comes back to it after the revocation.
        second = Rendezvous(backplane, settings, service)
        second.start()
        joined = second
        wait_until(
            "the partitions shared between the two members",
            lambda: len(first.owned) == 1 and len(joined.owned) == 1,
            30,
        )
        scores = [OutRecord(score(rid, CHAMP).encode(), rid.encode()) for rid in ids]
        backplane.produce(topics.scores, scores)

        records = read_all(backplane, topics.results, expect=HELD, timeout=30.0, settle=0.5)
        decided = [decode_result(r.value) for r in records if r.header(LATE_HEADER) is None]
        by_id = {r.request_id: r for r in decided}
        assert sorted(by_id) == sorted(ids), f"not answered: {sorted(set(ids) - set(by_id))}"
        assert len(decided) == HELD, "a request was answered twice"
        not_by_model = {r.request_id: (r.fallback, r.error) for r in decided if r.model is None}
        assert not not_by_model, f"answered without the model: {not_by_model}"
    finally:
        first.stop()
        if second is not None:
            second.stop()
