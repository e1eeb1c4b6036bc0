"""How the SQLite engine wakes waiting consumers and serialises a process's writers."""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from modelstream.backplane.records import OutRecord
from modelstream.backplane.sqlite import schema, wakeup
from modelstream.backplane.sqlite.engine import SqliteBackplane
from modelstream.backplane.sqlite.wakeup import Wakeups, fallback_interval, wakeups_for
from modelstream.backplane.sqlite.writelock import write_lock
from modelstream.settings import Settings

pytestmark = pytest.mark.integration


def topic_file(tmp_path: Path, name: str = "t.db") -> str:
    conn = schema.connect(tmp_path / name, create=True)
    schema.create_schema(conn, schema.TOPIC_DDL)
    conn.close()
    return name


def silent_commit(path: Path) -> None:
    """A record committed through a connection of its own: it rings no bell, so only the
    watcher's ``data_version`` check can see it (as with another process's commit)."""
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute(schema.INSERT_RECORD, (0, 0, 0, None, b"v", None))


def test_a_local_change_sets_the_events_of_the_files_waiters_only(tmp_path: Path) -> None:
    wakeups = Wakeups(tmp_path)
    a, b = threading.Event(), threading.Event()
    wakeups.watch([topic_file(tmp_path, "a.db")], a)
    wakeups.watch([topic_file(tmp_path, "b.db")], b)
    try:
        # The watcher's first look at each file counts as a change (a spurious wake-up,
        # never a miss): let it happen before clearing, or it may set b after the clear.
        assert a.wait(10) and b.wait(10)
        a.clear()
        b.clear()
        wakeups.changed("a.db")
        assert a.is_set()
        assert not b.is_set()
    finally:
        wakeups.unwatch(["a.db"], a)
        wakeups.unwatch(["b.db"], b)


def test_a_commit_through_another_connection_wakes_the_waiter(tmp_path: Path) -> None:
    # Another connection stands for another process: only the watcher thread can see it.
    file = topic_file(tmp_path)
    wakeups = Wakeups(tmp_path)
    event = threading.Event()
    wakeups.watch([file], event)
    try:
        assert event.wait(10)  # the watcher's first look counts as a change
        event.clear()
        silent_commit(tmp_path / file)
        assert event.wait(10)
    finally:
        wakeups.unwatch([file], event)


def test_the_safety_net_is_fast_only_while_a_ring_can_be_lost() -> None:
    now = 1000.0
    long_ago = now - 60
    assert fallback_interval(now, long_ago, long_ago) == wakeup.FALLBACK_IDLE_S
    assert fallback_interval(now, now - 0.05, long_ago) == wakeup.FALLBACK_S  # rings flow
    assert fallback_interval(now, long_ago, now - 1.0) == wakeup.FALLBACK_S  # advertised
    assert wakeup.FRESH_S > 1.0 + 0.02  # a writer re-lists within RELIST_S + LOOK_S
    assert wakeup.FALLBACK_S < wakeup.FALLBACK_IDLE_S <= 0.1


def test_an_idle_watcher_checks_ten_times_a_second_and_still_sees_a_silent_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit that rings no bell (another connection) is still seen once the watcher
    has slowed down, and slowing down is what an idle process costs."""
    monkeypatch.setattr(wakeup, "FRESH_S", 0.2)
    file = topic_file(tmp_path)
    wakeups = Wakeups(tmp_path)
    event = threading.Event()
    wakeups.watch([file], event)
    try:
        assert event.wait(10)
        time.sleep(0.5)  # past FRESH_S: the watcher is idle
        before, start = wakeups.checks, time.monotonic()
        time.sleep(1.0)
        rate = (wakeups.checks - before) / (time.monotonic() - start)
        assert 0 < rate <= 1.5 / wakeup.FALLBACK_IDLE_S  # not 1 / FALLBACK_S = 100
        event.clear()
        silent_commit(tmp_path / file)
        assert event.wait(10)
    finally:
        wakeups.unwatch([file], event)


def test_a_file_nobody_watches_any_more_is_forgotten(tmp_path: Path) -> None:
    file = topic_file(tmp_path)
    wakeups = Wakeups(tmp_path)
    event = threading.Event()
    wakeups.watch([file], event)
    wakeups.watch([file], event)
    wakeups.unwatch([file], event)
    event.clear()
    wakeups.changed(file)
    assert event.is_set()  # still watched once
    wakeups.unwatch([file], event)
    event.clear()
    wakeups.changed(file)
    assert not event.is_set()


def test_locks_and_wakeups_are_shared_per_path_within_the_process(tmp_path: Path) -> None:
    assert write_lock(tmp_path / "x.db") is write_lock(tmp_path / "x.db")
    assert write_lock(tmp_path / "x.db") is not write_lock(tmp_path / "y.db")
    assert wakeups_for(tmp_path) is wakeups_for(tmp_path)


def test_a_consumer_waiting_on_one_backplane_object_gets_records_of_another(
    tmp_path: Path,
) -> None:
    settings = Settings(backplane=f"sqlite://{tmp_path}", session_timeout_ms=1000)
    writer, reader = SqliteBackplane(tmp_path, settings), SqliteBackplane(tmp_path, settings)
    consumer = reader.consumer(["t"], start="latest")
    got: list[bytes] = []
    try:
        assert consumer.poll(10, 0.0) == []

        def produce() -> None:
            writer.produce("t", [OutRecord(b"hello", b"k")])

        thread = threading.Thread(target=produce)
        thread.start()
        got = [r.value for r in consumer.poll(10, 30.0)]
        thread.join(10)
    finally:
        consumer.close()
        writer.close()
        reader.close()
    assert got == [b"hello"]


def test_threads_writing_one_topic_keep_offsets_dense(tmp_path: Path) -> None:
    settings = Settings(backplane=f"sqlite://{tmp_path}", session_timeout_ms=1000)
    backplane = SqliteBackplane(tmp_path, settings)
    backplane.create_topic("t", 1)

    def write(n: int) -> None:
        for i in range(50):
            backplane.produce("t", [OutRecord(f"{n}-{i}".encode())])

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        ends = [p.end for p in backplane.describe_topic("t").partitions]
    finally:
        backplane.close()
    assert ends == [200]
