"""The backplane contract while a group rebalances under load, on every engine.

A member that commits what it has processed after every poll, as the roles do, must
lose nothing when a new member joins mid-stream and takes partitions away from it: the
group as a whole sees every record at least once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from contextlib import ExitStack, closing

from modelstream.backplane.port import Consumer
from modelstream.backplane.records import OutRecord

from .conftest import Factory
from .helpers import WAIT_S, settle, unique


def test_a_member_joining_while_records_are_produced_leaves_none_unseen(
    backplane_factory: Factory,
) -> None:
    first, second = backplane_factory(), backplane_factory()
    name, group = unique("join-live"), unique("group")
    first.create_topic(name, 4)
    sent: list[bytes] = []
    joined, failed = threading.Event(), []

    def produce() -> None:
        # Keep producing until well after the join, so records arrive before, during and
        # after the rebalance.
        batches_after_join, deadline = 0, time.monotonic() + WAIT_S
        try:
            while batches_after_join < 20 and time.monotonic() < deadline:
                batch = [b"r%d" % n for n in range(len(sent), len(sent) + 10)]
                first.produce(name, [OutRecord(v, key=v) for v in batch])
                sent.extend(batch)
                batches_after_join += joined.is_set()
                time.sleep(0.01)
        except Exception as exc:  # reported by the main thread
            failed.append(exc)

    seen: Counter[bytes] = Counter()

    def work(members: list[Consumer]) -> None:
        for member in members:
            seen.update(r.value for r in member.poll(max_records=200, timeout=0.02))
            member.commit()  # after processing: at-least-once

    with ExitStack() as stack:
        a = stack.enter_context(closing(first.consumer([name], group=group)))
        settle([a], 4)
        producer = threading.Thread(target=produce)
        producer.start()
        try:
            deadline = time.monotonic() + WAIT_S
            while len(seen) < 50 and time.monotonic() < deadline:
                work([a])  # a alone has read (and committed) part of the stream
            b = stack.enter_context(closing(second.consumer([name], group=group)))
            while time.monotonic() < deadline and not (
                a.assignment() and b.assignment() and len(a.assignment() | b.assignment()) == 4
            ):
                work([a, b])
            assert a.assignment() and b.assignment(), "b never joined the group"
            joined.set()
        finally:
            producer.join(WAIT_S)
        assert not failed, failed
        deadline = time.monotonic() + WAIT_S
        while set(sent) - set(seen) and time.monotonic() < deadline:
            work([a, b])
    assert len(sent) >= 250  # 50 before the join, 200 after it, the rest during it
    assert set(sent) - set(seen) == set()  # none skipped; repeats are allowed
