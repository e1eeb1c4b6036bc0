"""Group leases on the engines without a broker: a member that stops polling is expired.

(On Kafka the client heartbeats from a background thread, so a silent consumer is only
dropped after ``max_poll_interval_ms``; that is tested with the Kafka engine.)
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest

from modelstream.backplane.records import OutRecord, TopicPartition

from .conftest import MAKERS, Factory
from .helpers import poll_until, settle, unique


@pytest.fixture(params=["memory", "sqlite"])
def local_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    return MAKERS[request.param](request, tmp_path)


def test_a_silent_member_is_expired_and_its_partitions_move(local_factory: Factory) -> None:
    first, second = local_factory(), local_factory()
    name, group = unique("lease"), unique("group")
    first.create_topic(name, 4)
    with closing(first.consumer([name], group=group)) as a:
        silent = second.consumer([name], group=group)
        try:
            settle([a, silent], 4)
            first.produce(name, [OutRecord(b"%d" % i, partition=i % 4) for i in range(40)])
            # ``silent`` never polls again: after the session timeout a reads everything.
            got = poll_until([a], lambda got: len(got[0]) >= 40)[0]
            assert a.assignment() == {TopicPartition(name, p) for p in range(4)}
            assert len({r.value for r in got}) == 40
            description = first.describe_topic(name)
            assert {g.group: g.members for g in description.groups}.get(group, 0) <= 1
        finally:
            silent.close()
    first.close()
    second.close()
