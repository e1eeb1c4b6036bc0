"""Consumer groups of the SQLite engine: members with a lease, and committed offsets.

There is no coordinator. Each member writes a heartbeat row into ``meta.db`` (at least
every few hundred milliseconds while it polls); a row older than the session timeout
is a dead member and whoever heartbeats next deletes it. Every member computes the
assignment itself with :func:`member_assignment` from the same list of live members, so
all members agree once they have read the same list (within one heartbeat interval).

During that interval two members may both read a partition: records can then be
delivered twice, never skipped, which is the at-least-once contract.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping

from modelstream.backplane.assignment import range_assign
from modelstream.backplane.records import GroupInfo, TopicPartition
from modelstream.backplane.sqlite.schema import transaction

Members = dict[str, tuple[str, ...]]

_SEP = "\n"


def heartbeat(
    conn: sqlite3.Connection,
    group: str,
    member: str,
    topics: tuple[str, ...],
    *,
    now_ms: int,
    timeout_ms: int,
) -> Members:
    """Renew ``member``'s lease, expire silent members, and return the live members."""
    with transaction(conn):
        conn.execute(
            "INSERT INTO members (grp, member, topics, last_seen_ms) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (grp, member) DO UPDATE SET"
            " topics = excluded.topics, last_seen_ms = excluded.last_seen_ms",
            (group, member, _SEP.join(topics), now_ms),
        )
        conn.execute(
            "DELETE FROM members WHERE grp = ? AND last_seen_ms < ?", (group, now_ms - timeout_ms)
        )
        rows = conn.execute("SELECT member, topics FROM members WHERE grp = ?", (group,)).fetchall()
    return {name: tuple(subscribed.split(_SEP)) for name, subscribed in rows}


def leave(conn: sqlite3.Connection, group: str, member: str) -> None:
    """Remove ``member`` now, so the others take its partitions at their next heartbeat."""
    with transaction(conn):
        conn.execute("DELETE FROM members WHERE grp = ? AND member = ?", (group, member))


def member_assignment(
    members: Mapping[str, tuple[str, ...]], member: str, partitions: Mapping[str, int]
) -> frozenset[TopicPartition]:
    """``member``'s partitions: per topic, a range split over the members subscribing to it.

    ``partitions`` maps each existing topic to its partition count; topics missing from
    it are ignored. Members subscribing to the same topics with equal partition counts
    get the same partition numbers of each (co-partitioning).
    """
    assigned: set[TopicPartition] = set()
    for name in members.get(member, ()):
        count = partitions.get(name)
        if count is None:
            continue
        subscribers = [m for m, subscribed in members.items() if name in subscribed]
        assigned |= range_assign(subscribers, {name: count}).get(member, frozenset())
    return frozenset(assigned)


def commit(
    conn: sqlite3.Connection,
    group: str,
    member: str,
    offsets: Mapping[TopicPartition, int],
    now_ms: int,
) -> None:
    """Store the next offset to read per partition for ``group``; also renews the lease."""
    rows = [(group, tp.topic, tp.partition, offset) for tp, offset in offsets.items()]
    with transaction(conn):
        conn.executemany(
            "INSERT INTO offsets (grp, topic, partition, next_offset) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (grp, topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
            rows,
        )
        conn.execute(
            "UPDATE members SET last_seen_ms = MAX(last_seen_ms, ?) WHERE grp = ? AND member = ?",
            (now_ms, group, member),
        )


def committed(
    conn: sqlite3.Connection, group: str, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int | None]:
    """The committed next offset of each partition, ``None`` where nothing is committed."""
    wanted = list(partitions)
    found: dict[TopicPartition, int | None] = dict.fromkeys(wanted)
    for topic in {tp.topic for tp in wanted}:
        for partition, offset in conn.execute(
            "SELECT partition, next_offset FROM offsets WHERE grp = ? AND topic = ?",
            (group, topic),
        ):
            tp = TopicPartition(topic, partition)
            if tp in found:
                found[tp] = offset
    return found


def describe_groups(
    conn: sqlite3.Connection,
    topic: str,
    ends: Mapping[int, int],
    starts: Mapping[int, int],
    *,
    now_ms: int,
    timeout_ms: int,
) -> tuple[GroupInfo, ...]:
    """Every group with offsets committed on ``topic`` or live members subscribing to it."""
    commits: dict[str, dict[int, int]] = {}
    for group, partition, offset in conn.execute(
        "SELECT grp, partition, next_offset FROM offsets WHERE topic = ?", (topic,)
    ):
        commits.setdefault(group, {})[partition] = offset
    live: dict[str, int] = {}
    for group, subscribed in conn.execute(
        "SELECT grp, topics FROM members WHERE last_seen_ms >= ?", (now_ms - timeout_ms,)
    ):
        if topic in subscribed.split(_SEP):
            live[group] = live.get(group, 0) + 1
    infos = []
    for group in sorted(commits.keys() | live.keys()):
        done = commits.get(group, {})
        lag = {p: max(0, end - done.get(p, starts.get(p, 0))) for p, end in ends.items()}
        infos.append(GroupInfo(group, done, lag, live.get(group, 0)))
    return tuple(infos)


def forget_topic(conn: sqlite3.Connection, topic: str) -> None:
    """Drop every group's committed offsets on ``topic`` (inside the caller's transaction)."""
    conn.execute("DELETE FROM offsets WHERE topic = ?", (topic,))
