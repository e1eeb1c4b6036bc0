"""Doorbells: how a commit in one process wakes the waiters of the others at once.

Two :class:`Doorbell` objects on one directory stand for two processes (each owns its
own bell); the tests that need a real second process start one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelstream.backplane.sqlite import wakeup
from modelstream.backplane.sqlite.doorbell import ADVERTISED, Doorbell
from modelstream.backplane.sqlite.engine import SqliteBackplane
from modelstream.backplane.sqlite.wakeup import DOORBELLS, Wakeups
from modelstream.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def bells(tmp_path: Path) -> Iterator[list[Doorbell]]:
    """Three processes' doorbells on one directory (closed at the end)."""
    made = [Doorbell(tmp_path / DOORBELLS) for _ in range(3)]
    yield made
    for bell in made:
        bell.close()


def listening(bell: Doorbell, files: set[str] | None) -> Doorbell:
    assert bell.listen() is not None
    if files is not None:
        bell.advertise(frozenset(files))
    return bell


def test_a_ring_reaches_the_bells_that_advertise_the_file_and_no_other(
    bells: list[Doorbell],
) -> None:
    a, b, writer = listening(bells[0], {"a.db"}), listening(bells[1], {"b.db"}), bells[2]
    writer.ring("a.db")
    assert a.heard() == {"a.db"}
    assert b.heard() == set()  # the gateway is not woken by scores it does not read
    writer.ring("b.db")
    writer.ring("b.db")
    assert b.heard() == {"b.db"}
    assert a.heard() == set()


def test_a_bell_that_has_not_advertised_yet_is_rung_for_every_file(
    bells: list[Doorbell],
) -> None:
    fresh, writer = listening(bells[0], None), bells[1]
    writer.ring("a.db")
    writer.ring("z.db")
    assert fresh.heard() == {"a.db", "z.db"}


def test_a_process_never_rings_its_own_bell(bells: list[Doorbell]) -> None:
    own = listening(bells[0], {"a.db"})
    own.ring("a.db")
    assert own.heard() == set()


def test_a_closed_bell_leaves_nothing_behind(tmp_path: Path, bells: list[Doorbell]) -> None:
    listening(bells[0], {"a.db"}).close()
    assert os.listdir(tmp_path / DOORBELLS) == []
    bells[1].ring("a.db")  # nobody to ring: no error


OWNER = """
import sys, time
from pathlib import Path
from modelstream.backplane.sqlite.doorbell import Doorbell
bell = Doorbell(Path(sys.argv[1]))
bell.listen()
bell.advertise(frozenset({"a.db"}))
print("listening", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("writer_knew_it", [True, False], ids=["open-pipe", "fresh-writer"])
def test_the_bell_of_a_killed_process_is_removed_by_the_next_ring(
    tmp_path: Path, writer_knew_it: bool
) -> None:
    directory = tmp_path / DOORBELLS
    command = [sys.executable, "-c", OWNER, str(directory)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as owner:
        try:
            assert owner.stdout is not None and owner.stdout.readline() == "listening\n"
            (name,) = [n for n in os.listdir(directory) if not n.endswith(ADVERTISED)]
            writer = Doorbell(directory)
            if writer_knew_it:
                writer.ring("a.db")  # opens the pipe while its reader lives
        finally:
            owner.send_signal(signal.SIGKILL)  # no atexit: the bell stays behind
            owner.wait(10)
    assert sorted(os.listdir(directory)) == [name, f"{name}{ADVERTISED}"]
    time.sleep(0.05)  # past the writer's LOOK_S: it looks at the directory again
    writer.ring("a.db")  # EPIPE on the open pipe, or ENXIO opening it: the owner is gone
    assert os.listdir(directory) == []


PRODUCER = """
import sys
from pathlib import Path
from modelstream.backplane.records import OutRecord
from modelstream.backplane.sqlite.engine import SqliteBackplane
from modelstream.settings import Settings
directory = Path(sys.argv[1])
backplane = SqliteBackplane(directory, Settings(backplane=f"sqlite://{directory}"))
backplane.produce("t", [OutRecord(b"rung")])
backplane.close()
"""


@pytest.fixture
def topic(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """The topics directory and the file of topic ``t`` of a SQLite backplane."""
    backplane = SqliteBackplane(tmp_path, Settings(backplane=f"sqlite://{tmp_path}"))
    backplane.create_topic("t", 1)
    file = backplane.catalog()["t"].file
    yield backplane.topic_path(file).parent, file
    backplane.close()


def wait_after_first_look(wakeups: Wakeups, file: str) -> threading.Event:
    event = threading.Event()
    wakeups.watch([file], event)
    assert event.wait(10)  # the watcher's first look counts as a change
    event.clear()
    return event


def test_a_commit_in_another_process_wakes_the_waiter_through_its_bell(
    tmp_path: Path, topic: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The safety-net poll is pushed past the wait below: only the bell can wake it.
    monkeypatch.setattr(wakeup, "FALLBACK_S", 120.0)
    monkeypatch.setattr(wakeup, "FALLBACK_IDLE_S", 120.0)
    directory, file = topic
    wakeups = Wakeups(directory)
    event = wait_after_first_look(wakeups, file)
    try:
        assert (directory / DOORBELLS).is_dir()
        subprocess.run([sys.executable, "-c", PRODUCER, str(tmp_path)], check=True, timeout=60)
        assert event.wait(30)
    finally:
        wakeups.unwatch([file], event)


def test_without_named_pipes_the_watcher_polls(
    tmp_path: Path, topic: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "mkfifo")  # as on Windows
    directory, file = topic
    wakeups = Wakeups(directory)
    event = wait_after_first_look(wakeups, file)
    try:
        assert not (directory / DOORBELLS).exists()
        subprocess.run([sys.executable, "-c", PRODUCER, str(tmp_path)], check=True, timeout=60)
        assert event.wait(30)
    finally:
        wakeups.unwatch([file], event)
