"""What the SQLite engine promises beyond the shared contract."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.records import OutRecord, TopicPartition
from modelstream.backplane.sqlite.engine import SqliteBackplane
from modelstream.backplane.sqlite.schema import decode_headers, encode_headers
from modelstream.errors import BackplaneUnavailable, TopicNotFound
from modelstream.settings import Settings

from .helpers import collect, unique


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(backplane=f"sqlite://{tmp_path}", session_timeout_ms=1000)


def test_a_directory_that_cannot_be_created_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(BackplaneUnavailable) as caught:
        open_backplane(f"sqlite://{blocker}/backplane")
    message = str(caught.value)
    assert str(blocker / "backplane") in message
    assert "--backplane" in message
    assert "\n" not in message


def test_the_url_names_the_directory(tmp_path: Path, settings: Settings) -> None:
    backplane = SqliteBackplane(tmp_path / "bp", settings)
    try:
        assert backplane.url == f"sqlite://{tmp_path / 'bp'}"
        assert (tmp_path / "bp" / "meta.db").exists()
    finally:
        backplane.close()


def test_threads_share_one_backplane_and_offsets_stay_dense(
    tmp_path: Path, settings: Settings
) -> None:
    backplane = SqliteBackplane(tmp_path, settings)
    name = unique("threads")
    backplane.create_topic(name, 2)
    errors: list[BaseException] = []

    def produce(worker: int) -> None:
        try:
            for batch in range(20):
                backplane.produce(
                    name, [OutRecord(b"%d-%d-%d" % (worker, batch, i)) for i in range(25)]
                )
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=produce, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    try:
        with closing(backplane.consumer([name])) as consumer:
            got = collect(consumer, 2000)
        for partition in (0, 1):
            offsets = [r.offset for r in got if r.partition == partition]
            assert offsets == list(range(len(offsets)))
        assert len({r.value for r in got}) == 2000
    finally:
        backplane.close()


@pytest.fixture
def handles(
    tmp_path: Path, settings: Settings
) -> Iterator[tuple[SqliteBackplane, SqliteBackplane]]:
    """Two handles on one directory, as two processes would have (closed at the end)."""
    first, second = SqliteBackplane(tmp_path, settings), SqliteBackplane(tmp_path, settings)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def test_a_second_handle_sees_deletes_and_new_incarnations(
    tmp_path: Path, handles: tuple[SqliteBackplane, SqliteBackplane]
) -> None:
    first, second = handles
    name = unique("incarnation")
    first.produce(name, [OutRecord(b"old", partition=0)])
    consumer = second.consumer([name])
    with closing(consumer):
        assert [r.value for r in collect(consumer, 1)] == [b"old"]
        first.delete_topic(name)
        with pytest.raises(TopicNotFound):
            second.describe_topic(name)
        first.create_topic(name, 2)
        # The second handle produces into the new incarnation, not the deleted file.
        second.produce(name, [OutRecord(b"new", partition=1)])
        assert [r.value for r in collect(consumer, 1)] == [b"new"]
    assert first.describe_topic(name).records == 1
    assert len(list((tmp_path / "topics").glob(f"{name}-*.db"))) == 1


def test_offset_commits_and_heartbeats_do_not_reload_the_catalogue(
    handles: tuple[SqliteBackplane, SqliteBackplane],
) -> None:
    # meta.db changes at every commit and heartbeat; re-reading every topic each time
    # cost each role a query per poll and per produce. Only topic changes reload it.
    first, second = handles
    name = unique("stamp")
    first.create_topic(name, 1)
    seen = second.catalog()
    assert name in seen
    first.set_group_offsets("g", {TopicPartition(name, 0): 0})
    assert second.catalog() is seen
    first.create_topic(f"{name}-2", 1)
    assert f"{name}-2" in second.catalog()


def test_headers_codec_round_trips() -> None:
    headers = (("a", b""), ("ü", b"\x00" * 70_000), ("a", b"2"))
    assert decode_headers(encode_headers(headers)) == headers
    assert decode_headers(encode_headers(())) == ()


def test_close_leaves_a_running_threads_connection_to_it_and_closes_the_rest(
    tmp_path: Path, settings: Settings
) -> None:
    """Closing another thread's connection while it may be inside a statement is a
    use-after-free in SQLite: close() must only close its own and dead threads' ones."""
    backplane = SqliteBackplane(tmp_path, settings)
    name = unique("close")
    backplane.produce(name, [OutRecord(b"main")])
    opened: dict[str, sqlite3.Connection] = {}
    release = threading.Event()

    def produce_then(hold: bool, label: str) -> None:
        backplane.produce(name, [OutRecord(label.encode())])
        opened[label] = backplane._meta()
        if hold:
            release.wait(10)

    ended = threading.Thread(target=produce_then, args=(False, "ended"))
    ended.start()
    ended.join()
    running = threading.Thread(target=produce_then, args=(True, "running"))
    running.start()
    try:
        while "running" not in opened:
            release.wait(0.01)
        mine = backplane._meta()
        backplane.close()
        assert opened["running"].execute("SELECT 1").fetchone() == (1,)
        for conn in (mine, opened["ended"]):
            with pytest.raises(sqlite3.ProgrammingError, match="closed"):
                conn.execute("SELECT 1")
        # still usable from any thread after close: fresh connections
        backplane.produce(name, [OutRecord(b"after")])
        with closing(backplane.consumer([name])) as consumer:
            values = {r.value for r in collect(consumer, 4)}
        assert values == {b"main", b"ended", b"running", b"after"}
    finally:
        release.set()
        running.join()
        backplane.close()
