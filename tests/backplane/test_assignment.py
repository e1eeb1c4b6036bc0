"""The range assignor shared by the engines without a broker."""

from __future__ import annotations

from modelstream.backplane.assignment import range_assign
from modelstream.backplane.records import TopicPartition
from modelstream.backplane.sqlite.groups import member_assignment


def partitions_of(assigned: frozenset[TopicPartition], topic: str) -> list[int]:
    return sorted(tp.partition for tp in assigned if tp.topic == topic)


def test_ranges_are_contiguous_and_the_first_members_take_the_extra() -> None:
    result = range_assign(["c", "a", "b"], {"t": 7})
    assert [partitions_of(result[m], "t") for m in ("a", "b", "c")] == [[0, 1, 2], [3, 4], [5, 6]]


def test_every_partition_goes_to_exactly_one_member() -> None:
    result = range_assign([f"m{i}" for i in range(5)], {"x": 13, "y": 2})
    everything = [tp for assigned in result.values() for tp in assigned]
    assert len(everything) == len(set(everything)) == 15


def test_the_answer_depends_only_on_the_set_of_members() -> None:
    assert range_assign(["b", "a", "a"], {"t": 4}) == range_assign(["a", "b"], {"t": 4})


def test_more_members_than_partitions_leaves_some_idle() -> None:
    result = range_assign(["a", "b", "c"], {"t": 2})
    assert [len(result[m]) for m in ("a", "b", "c")] == [1, 1, 0]


def test_no_members_no_assignment() -> None:
    assert range_assign([], {"t": 3}) == {}


def test_topics_of_equal_size_are_co_partitioned() -> None:
    result = range_assign(["a", "b"], {"requests": 4, "scores": 4})
    for assigned in result.values():
        assert partitions_of(assigned, "requests") == partitions_of(assigned, "scores")


def test_each_topic_is_split_among_its_own_subscribers() -> None:
    members = {"a": ("requests", "scores"), "b": ("requests",), "c": ("scores",)}
    counts = {"requests": 4, "scores": 2}
    a = member_assignment(members, "a", counts)
    b = member_assignment(members, "b", counts)
    c = member_assignment(members, "c", counts)
    assert partitions_of(a, "requests") == [0, 1]
    assert partitions_of(b, "requests") == [2, 3]
    assert partitions_of(a, "scores") == [0]
    assert partitions_of(c, "scores") == [1]
    assert member_assignment(members, "a", {"requests": 4}) == frozenset(
        TopicPartition("requests", p) for p in (0, 1)
    )
