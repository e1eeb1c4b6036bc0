"""The backplane contract on seeking and event time, run against every engine.

``seek_to_time(t)`` moves to the *first record in offset order* whose timestamp is at or
after ``t``: an exact match counts, and with timestamps out of order a later, smaller
timestamp never pulls the position back.
"""

from __future__ import annotations

from contextlib import closing

from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord, TopicPartition

from .helpers import collect, unique


def _produce_at(backplane: Backplane, name: str, partition: int, stamps: list[int]) -> None:
    backplane.produce(
        name,
        [OutRecord(b"%d@%d" % (partition, t), partition=partition, timestamp=t) for t in stamps],
    )


def test_seek_to_offset_beginning_end_and_time(backplane: Backplane) -> None:
    name = unique("seek")
    backplane.create_topic(name, 2)
    tp = TopicPartition(name, 0)
    backplane.produce(
        name, [OutRecord(b"%d" % i, partition=0, timestamp=1000 * (i + 1)) for i in range(10)]
    )
    with closing(backplane.consumer([name])) as consumer:
        assert len(collect(consumer, 10)) == 10
        consumer.seek(tp, 5)
        assert consumer.position(tp) == 5
        assert [r.offset for r in collect(consumer, 5)] == [5, 6, 7, 8, 9]
        consumer.seek_to_beginning([tp])
        assert consumer.position(tp) == 0
        assert collect(consumer, 10)[0].offset == 0
        consumer.seek_to_time(4500)
        assert consumer.position(tp) == 4
        assert collect(consumer, 1)[0].timestamp == 5000
        consumer.seek_to_time(99_000, [tp])
        assert consumer.position(tp) == 10
        consumer.seek_to_beginning()
        consumer.seek_to_end()
        assert consumer.position(tp) == 10
        assert consumer.poll(timeout=0.2) == []
        backplane.produce(name, [OutRecord(b"after", partition=0)])
        assert [r.value for r in collect(consumer, 1)] == [b"after"]


def test_seek_to_an_exact_timestamp_lands_on_that_record(backplane: Backplane) -> None:
    name = unique("seek-exact")
    backplane.create_topic(name, 1)
    tp = TopicPartition(name, 0)
    _produce_at(backplane, name, 0, [1000, 2000, 3000, 3000, 4000])
    with closing(backplane.consumer([name])) as consumer:
        consumer.seek_to_time(3000)
        assert consumer.position(tp) == 2  # the first of the two at 3000, not the next one
        assert collect(consumer, 1)[0].timestamp == 3000
        consumer.seek_to_time(1000)
        assert consumer.position(tp) == 0
        consumer.seek_to_time(4000)
        assert consumer.position(tp) == 4
        consumer.seek_to_time(4001)
        assert consumer.position(tp) == 5  # past every record: the end


def test_seek_to_time_with_out_of_order_timestamps_takes_the_first_in_offset_order(
    backplane: Backplane,
) -> None:
    name = unique("seek-unordered")
    backplane.create_topic(name, 2)
    p0, p1 = TopicPartition(name, 0), TopicPartition(name, 1)
    _produce_at(backplane, name, 0, [1000, 2000, 6000, 3000, 7000, 2500])
    _produce_at(backplane, name, 1, [5000, 1000, 3000])
    with closing(backplane.consumer([name])) as consumer:
        consumer.seek_to_time(3000)
        # Partition 0: 6000 at offset 2 comes before the exact 3000 at offset 3.
        # Partition 1: 5000 at offset 0 comes first, though 1000 follows it.
        assert (consumer.position(p0), consumer.position(p1)) == (2, 0)
        consumer.seek_to_time(6500)
        assert (consumer.position(p0), consumer.position(p1)) == (4, 3)
        consumer.seek_to_time(2200, [p0])
        assert consumer.position(p0) == 2
        got = collect(consumer, 4)
        assert [(r.partition, r.offset, r.timestamp) for r in got if r.partition == 0] == [
            (0, 2, 6000),
            (0, 3, 3000),
            (0, 4, 7000),
            (0, 5, 2500),
        ]
