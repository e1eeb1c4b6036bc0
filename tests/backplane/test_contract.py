"""The backplane contract (modelstream.backplane.port), run against every engine.

Written to hold on a real Kafka broker too: names are unique per test, assignment is
never assumed before polling, and every wait is a bounded polling loop.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from contextlib import ExitStack, closing

import pytest

from modelstream.backplane.partitioner import partition_for
from modelstream.backplane.port import Backplane
from modelstream.backplane.records import (
    GroupInfo,
    OutRecord,
    TopicDescription,
    TopicPartition,
    now_ms,
)
from modelstream.errors import ConfigurationError, ConsumerClosed, RecordTooLarge, TopicNotFound

from .conftest import Factory
from .helpers import WAIT_S, collect, poll_until, settle, unique


def values(records: list[OutRecord]) -> set[bytes]:
    return {r.value for r in records}


def keyed(count: int, prefix: str = "v") -> list[OutRecord]:
    return [OutRecord(f"{prefix}{i}".encode(), key=f"key-{i}".encode()) for i in range(count)]


def tps(topic: str, partitions: int) -> frozenset[TopicPartition]:
    return frozenset(TopicPartition(topic, p) for p in range(partitions))


# -- topics ---------------------------------------------------------------------------


def test_create_list_describe_delete(backplane: Backplane) -> None:
    name = unique("topics")
    spec = backplane.create_topic(name, 3)
    assert (spec.name, spec.partitions, spec.compacted) == (name, 3, False)
    assert backplane.create_topic(name, 5).partitions == 3  # existing topics are kept
    listed = backplane.list_topics()
    assert [s.name for s in listed] == sorted(s.name for s in listed)
    assert spec in listed
    description = backplane.describe_topic(name)
    assert description.spec == spec
    assert [(p.partition, p.records) for p in description.partitions] == [(0, 0), (1, 0), (2, 0)]
    backplane.delete_topic(name)
    assert name not in {s.name for s in backplane.list_topics()}
    with pytest.raises(TopicNotFound):
        backplane.delete_topic(name)
    with pytest.raises(TopicNotFound):
        backplane.describe_topic(name)
    with pytest.raises(TopicNotFound):
        backplane.partitions(name)
    with pytest.raises(TopicNotFound):
        backplane.group_offsets(unique("group"), name)


def test_partitions_are_the_offsets_describe_gives(backplane: Backplane) -> None:
    name = unique("partitions")
    backplane.create_topic(name, 3)
    backplane.produce(name, [OutRecord(b"%d" % i, partition=i % 2) for i in range(7)])
    partitions = backplane.partitions(name)
    assert [(p.partition, p.start, p.end) for p in partitions] == [(0, 0, 4), (1, 0, 3), (2, 0, 0)]
    assert partitions == backplane.describe_topic(name).partitions


def test_compacted_flag_is_kept(backplane: Backplane) -> None:
    name = unique("compacted")
    assert backplane.create_topic(name, 1, compacted=True).compacted
    assert {s.name: s for s in backplane.list_topics()}[name].compacted


def test_topics_are_created_on_first_use_with_the_default_partitions(
    backplane: Backplane,
) -> None:
    produced, consumed = unique("auto-produce"), unique("auto-consume")
    backplane.produce(produced, [OutRecord(b"x")])
    with closing(backplane.consumer([consumed])) as consumer:
        consumer.poll(timeout=0.1)
    specs = {s.name: s for s in backplane.list_topics()}
    assert specs[produced].partitions == 4
    assert specs[consumed].partitions == 4


def test_zero_partitions_is_refused(backplane: Backplane) -> None:
    with pytest.raises(ConfigurationError):
        backplane.create_topic(unique("zero"), 0)


# -- producing ------------------------------------------------------------------------


def test_keyed_records_land_where_kafka_murmur2_puts_them(backplane: Backplane) -> None:
    name = unique("keys")
    backplane.create_topic(name, 4)
    records = keyed(60)
    delivered = backplane.produce(name, records + records[:10])
    for out, where in zip(records + records[:10], delivered, strict=True):
        assert out.key is not None
        assert where.partition == partition_for(out.key, 4)
        assert where.topic == name


def test_explicit_partition_is_honoured_and_checked(backplane: Backplane) -> None:
    name = unique("explicit")
    backplane.create_topic(name, 3)
    delivered = backplane.produce(name, [OutRecord(b"a", key=b"k", partition=2)])
    assert delivered[0].partition == 2
    with pytest.raises(ConfigurationError):
        backplane.produce(name, [OutRecord(b"b", partition=0), OutRecord(b"c", partition=3)])


def test_unkeyed_records_are_spread(backplane: Backplane) -> None:
    name = unique("unkeyed")
    backplane.create_topic(name, 4)
    delivered = backplane.produce(name, [OutRecord(b"%d" % i) for i in range(40)])
    assert len({d.partition for d in delivered}) > 1


def test_offsets_are_dense_per_partition_and_batches_keep_order(backplane: Backplane) -> None:
    name = unique("offsets")
    backplane.create_topic(name, 4)
    first = backplane.produce(name, keyed(100, "a"))
    second = backplane.produce(name, keyed(100, "b"))
    per_partition: dict[int, list[int]] = {}
    for d in first + second:
        per_partition.setdefault(d.partition, []).append(d.offset)
    for offsets in per_partition.values():
        assert offsets == list(range(len(offsets)))
    assert backplane.describe_topic(name).records == 200
    assert backplane.produce(name, []) == []


def test_records_round_trip_every_field(backplane: Backplane) -> None:
    name = unique("fields")
    backplane.create_topic(name, 1)
    before = now_ms()
    sent = [
        OutRecord(b"plain"),
        OutRecord(b"", key=b"", headers=(("a", b""),)),
        OutRecord(b"\x00\xff" * 50, key=b"\x01k", timestamp=1_600_000_000_123),
        OutRecord(b"h", key=b"k", headers=(("trace", b"1"), ("x", b"\x00"), ("trace", b"2"))),
        OutRecord(b"first ms", timestamp=1),  # the earliest time every engine can store
    ]
    delivered = backplane.produce(name, sent)
    with closing(backplane.consumer([name])) as consumer:
        got = collect(consumer, len(sent))
    assert [(r.offset, r.key, r.value, r.headers) for r in got] == [
        (i, s.key, s.value, s.headers) for i, s in enumerate(sent)
    ]
    assert got[2].timestamp == 1_600_000_000_123 == delivered[2].timestamp
    assert before - 60_000 <= got[0].timestamp <= now_ms() + 60_000
    assert got[0].timestamp == delivered[0].timestamp
    assert got[3].header("trace") == b"2"
    assert got[3].header("missing") is None
    assert got[4].timestamp == 1 == delivered[4].timestamp


def test_a_batch_is_read_back_in_order(backplane: Backplane) -> None:
    name = unique("order")
    backplane.create_topic(name, 2)
    sent = [OutRecord(b"%d" % i, key=b"same") for i in range(300)]
    delivered = backplane.produce(name, sent)
    assert [d.offset for d in delivered] == list(range(300))
    with closing(backplane.consumer([name])) as consumer:
        got = collect(consumer, 300)
    assert [r.value for r in got] == [s.value for s in sent]


def test_a_record_above_the_limit_is_refused_and_nothing_of_its_call_is_written(
    backplane: Backplane,
) -> None:
    name = unique("sizes")
    backplane.create_topic(name, 1)
    limit = backplane.max_record_bytes
    key, headers = b"k", (("h", b"v"),)
    biggest = OutRecord(b"x" * (limit - 3), key, headers)  # value + key + header = limit
    too_big = OutRecord(b"x" * (limit - 2), key, headers)
    with pytest.raises(RecordTooLarge) as caught:
        backplane.produce(name, [OutRecord(b"small"), too_big])
    assert (caught.value.size, caught.value.limit) == (limit + 1, limit)
    assert "MODELSTREAM_MAX_RECORD_BYTES" in str(caught.value)
    assert [p.records for p in backplane.describe_topic(name).partitions] == [0]
    backplane.produce(name, [OutRecord(b"small"), biggest])
    with closing(backplane.consumer([name])) as consumer:
        got = collect(consumer, 2)
    assert [len(r.value) for r in got] == [5, limit - 3]
    assert got[1].value == biggest.value and got[1].headers == headers


# -- consuming without a group --------------------------------------------------------


def test_a_consumer_without_group_reads_every_partition(backplane: Backplane) -> None:
    name = unique("nogroup")
    backplane.create_topic(name, 4)
    sent = keyed(80)
    backplane.produce(name, sent)
    with closing(backplane.consumer([name])) as consumer:
        got = collect(consumer, 80)
        assert consumer.assignment() == tps(name, 4)
        with pytest.raises(ConfigurationError):
            consumer.commit()
    assert sorted(r.value for r in got) == sorted(values(sent))


def test_start_latest_skips_what_was_there(backplane: Backplane) -> None:
    name = unique("latest")
    backplane.create_topic(name, 2)
    backplane.produce(name, keyed(20, "old"))
    with closing(backplane.consumer([name], start="latest")) as consumer:
        early = poll_until([consumer], lambda _: len(consumer.assignment()) == 2)[0]
        for tp in consumer.assignment():
            consumer.position(tp)  # resolved before anything new is produced
        backplane.produce(name, keyed(10, "new"))
        got = early + collect(consumer, 10)
    assert sorted(r.value for r in got) == sorted(values(keyed(10, "new")))


def test_earliest_consumers_joining_mid_stream_miss_nothing(backplane: Backplane) -> None:
    """A consumer that starts at the beginning while records are being written gets all
    of them: where a partition begins is read once, not raced against the producer."""
    name = unique("midstream")
    backplane.create_topic(name, 4)
    sent = keyed(400)
    producing = threading.Thread(
        target=lambda: [backplane.produce(name, sent[i : i + 4]) for i in range(0, 400, 4)]
    )
    with ExitStack() as stack:
        producing.start()
        consumers, early = [], []
        for _ in range(4):
            group = unique("midstream-group")
            consumers.append(stack.enter_context(closing(backplane.consumer([name], group=group))))
            # Join (and read where each partition begins) while the producer runs.
            early.append(consumers[-1].poll(max_records=50, timeout=0.0))
        producing.join()
        rest = poll_until(
            consumers,
            lambda got: all(len(a) + len(b) >= 400 for a, b in zip(early, got, strict=True)),
        )
        got = [a + b for a, b in zip(early, rest, strict=True)]
    for records in got:
        assert sorted(r.value for r in records) == sorted(values(sent))


def test_a_closed_consumer_refuses_to_poll(backplane: Backplane) -> None:
    consumer = backplane.consumer([unique("closed")])
    consumer.close()
    consumer.close()  # closing twice is harmless
    with pytest.raises(ConsumerClosed):
        consumer.poll(timeout=0.01)


def test_read_compacted_keeps_the_latest_record_per_key(backplane: Backplane) -> None:
    name = unique("compact")
    backplane.create_topic(name, 3, compacted=True)
    backplane.produce(name, [OutRecord(b"a1", key=b"a"), OutRecord(b"b1", key=b"b")])
    backplane.produce(name, [OutRecord(b"a2", key=b"a"), OutRecord(b"no key")])
    # Latest means last written, even with an older event time.
    backplane.produce(name, [OutRecord(b"b2", key=b"b", timestamp=1)])
    view = backplane.read_compacted(name)
    assert {k: r.value for k, r in view.items()} == {b"a": b"a2", b"b": b"b2"}
    assert view[b"a"].partition == partition_for(b"a", 3)


# -- groups ---------------------------------------------------------------------------


def test_two_members_split_the_partitions_and_see_every_record_once(
    backplane_factory: Factory,
) -> None:
    first, second = backplane_factory(), backplane_factory()
    name, group = unique("split"), unique("group")
    first.create_topic(name, 4)
    with ExitStack() as stack:
        a = stack.enter_context(closing(first.consumer([name], group=group)))
        b = stack.enter_context(closing(second.consumer([name], group=group)))
        settle([a, b], 4)
        assert len(a.assignment()) == len(b.assignment()) == 2
        sent = keyed(400)
        first.produce(name, sent)
        got = poll_until([a, b], lambda got: sum(map(len, got)) >= 400)
        assignments = [a.assignment(), b.assignment()]
    seen = Counter(r.value for records in got for r in records)
    assert set(seen) == values(sent)
    assert max(seen.values()) == 1
    for records, assigned in zip(got, assignments, strict=True):
        assert records
        assert {r.topic_partition for r in records} <= assigned


def test_a_closing_member_hands_its_partitions_over(backplane_factory: Factory) -> None:
    first, second = backplane_factory(), backplane_factory()
    name, group = unique("handover"), unique("group")
    first.create_topic(name, 4)
    with closing(first.consumer([name], group=group)) as a:
        b = second.consumer([name], group=group)
        try:
            settle([a, b], 4)
            before = keyed(100, "before")
            first.produce(name, before)
            poll_until([a, b], lambda got: sum(map(len, got)) >= 100)
            a.commit()
            b.commit()
        finally:
            b.close()
        after = keyed(100, "after")
        first.produce(name, after)
        got = poll_until([a], lambda got: len(a.assignment()) == 4 and len(got[0]) >= 100)[0]
        assert a.assignment() == tps(name, 4)
    assert {r.value for r in got} == values(after)  # b had committed: nothing re-read


def test_a_new_member_resumes_from_the_committed_offsets(backplane_factory: Factory) -> None:
    first, second = backplane_factory(), backplane_factory()
    name, group = unique("resume"), unique("group")
    first.create_topic(name, 1)
    tp = TopicPartition(name, 0)
    sent = [OutRecord(b"%d" % i, partition=0) for i in range(50)]
    first.produce(name, sent)
    with closing(first.consumer([name], group=group)) as a:
        got = collect(a, 50)
        assert len(got) == 50
        a.commit({tp: 20})  # only the first 20 were processed
        assert a.committed([tp]) == {tp: 20}
    first.produce(name, [OutRecord(b"late", partition=0)])
    with closing(second.consumer([name], group=group)) as b:
        again = collect(b, 31)
        assert b.committed([tp]) == {tp: 20}
        b.commit()
        assert b.committed([tp]) == {tp: 51}
    # At least once: everything from offset 20 on is delivered again, nothing skipped.
    assert [r.offset for r in again] == list(range(20, 51))
    assert again[-1].value == b"late"


def test_offsets_set_from_outside_a_new_group_are_where_it_starts(
    backplane: Backplane,
) -> None:
    name, group = unique("setoffsets"), unique("setoffsets-group")
    backplane.create_topic(name, 2)
    backplane.produce(
        name, [OutRecord(f"p{p}-{i}".encode(), partition=p) for p in (0, 1) for i in range(5)]
    )
    assert backplane.group_offsets(group, name) == {}
    backplane.set_group_offsets(group, {TopicPartition(name, 0): 3})
    assert backplane.group_offsets(group, name) == {0: 3}
    with closing(backplane.consumer([name], group=group)) as consumer:
        got = collect(consumer, 7)
        assert consumer.committed([TopicPartition(name, 0)]) == {TopicPartition(name, 0): 3}
    # Partition 0 resumes at offset 3; partition 1, with nothing set, starts at the beginning.
    assert sorted(r.value for r in got) == sorted(
        [b"p0-3", b"p0-4"] + [f"p1-{i}".encode() for i in range(5)]
    )


def test_the_group_lag_shows_in_describe(backplane: Backplane) -> None:
    name, group = unique("lag"), unique("group")
    backplane.create_topic(name, 2)
    backplane.produce(name, [OutRecord(b"%d" % i, partition=i % 2) for i in range(10)])
    with closing(backplane.consumer([name], group=group)) as consumer:
        collect(consumer, 10)
        consumer.commit({TopicPartition(name, 0): 3, TopicPartition(name, 1): 5})

        def described() -> tuple[TopicDescription, GroupInfo | None]:
            description = backplane.describe_topic(name)
            return description, {g.group: g for g in description.groups}.get(group)

        # A broker may show commits and members a moment later: look until it does.
        deadline = time.monotonic() + WAIT_S
        description, info = described()
        while (info is None or info.members != 1 or info.committed != {0: 3, 1: 5}) and (
            time.monotonic() < deadline
        ):
            consumer.poll(timeout=0.05)
            description, info = described()
        assert info is not None
        assert info.committed == {0: 3, 1: 5}
        assert info.lag == {0: 2, 1: 0}
        assert info.total_lag == 2
        assert info.members == 1
        assert backplane.group_offsets(group, name) == {0: 3, 1: 5}
    assert [(p.start, p.end) for p in description.partitions] == [(0, 5), (0, 5)]


def test_co_partitioned_topics_go_to_the_same_member(backplane_factory: Factory) -> None:
    first, second = backplane_factory(), backplane_factory()
    requests, scores, group = unique("requests"), unique("scores"), unique("group")
    first.create_topic(requests, 4)
    first.create_topic(scores, 4)
    with ExitStack() as stack:
        a = stack.enter_context(closing(first.consumer([requests, scores], group=group)))
        b = stack.enter_context(closing(second.consumer([requests, scores], group=group)))
        settle([a, b], 8)
        for member in (a, b):
            by_topic: dict[str, set[int]] = {}
            for tp in member.assignment():
                by_topic.setdefault(tp.topic, set()).add(tp.partition)
            assert by_topic[requests] == by_topic[scores]
        first.produce(requests, keyed(100, "req"))
        first.produce(scores, keyed(100, "score"))
        got = poll_until([a, b], lambda got: sum(map(len, got)) >= 200)
    for records in got:
        keys_by_topic: dict[str, set[bytes | None]] = {requests: set(), scores: set()}
        for r in records:
            keys_by_topic[r.topic].add(r.key)
        assert keys_by_topic[requests] == keys_by_topic[scores]
    assert sum(map(len, got)) == 200
