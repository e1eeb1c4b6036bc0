"""Crash tests of the SQLite engine with real processes (see ``sqlite_worker.py``)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from modelstream.backplane.records import OutRecord
from modelstream.backplane.sqlite.engine import SqliteBackplane
from modelstream.settings import Settings

from .helpers import collect, unique

pytestmark = pytest.mark.integration

WORKER = Path(__file__).with_name("sqlite_worker.py")
WAIT_S = 30.0

Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Starts worker processes; any still running at the end of the test is killed."""
    children: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        child = subprocess.Popen([sys.executable, str(WORKER), *args])
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=WAIT_S)


def lines(path: Path) -> list[str]:
    """The complete lines of ``path`` (a child killed mid-write may leave half a line)."""
    if not path.exists():
        return []
    text = path.read_text()
    return text.split("\n")[:-1]


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def read_positions(path: Path) -> set[tuple[int, int]]:
    found = set()
    for line in lines(path):
        kind, *rest = line.split()
        if kind == "R":
            found.add((int(rest[0]), int(rest[1])))
    return found


def last_assignment(path: Path) -> set[int] | None:
    assigned = [line[2:] for line in lines(path) if line.startswith("A ")]
    if not assigned:
        return None
    return {int(p) for p in assigned[-1].split(",") if p}


def stop(child: subprocess.Popen[bytes]) -> None:
    child.send_signal(signal.SIGTERM)
    child.wait(timeout=WAIT_S)


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "backplane"


@pytest.fixture
def backplane(directory: Path) -> Iterator[SqliteBackplane]:
    settings = Settings(backplane=f"sqlite://{directory}", session_timeout_ms=1000)
    handle = SqliteBackplane(directory, settings)
    yield handle
    handle.close()


def test_a_killed_producer_loses_no_acknowledged_record(
    spawn: Spawn, backplane: SqliteBackplane, directory: Path, tmp_path: Path
) -> None:
    topic, acks = unique("crash-produce"), tmp_path / "acks"
    backplane.create_topic(topic, 4)
    producer = spawn("produce", str(directory), topic, str(acks))
    wait_until(lambda: len(lines(acks)) >= 3000, "acknowledged records")
    producer.send_signal(signal.SIGKILL)
    producer.wait(timeout=WAIT_S)
    acknowledged = {}
    for line in lines(acks):
        partition, offset, value = line.split()
        acknowledged[(int(partition), int(offset))] = value.encode()
    stored = backplane.describe_topic(topic).records
    assert stored >= len(acknowledged) >= 3000
    with closing(backplane.consumer([topic])) as consumer:
        got = {(r.partition, r.offset): r.value for r in collect(consumer, stored)}
    missing = {k: v for k, v in acknowledged.items() if got.get(k) != v}
    assert not missing


def test_a_killed_consumer_restarted_in_its_group_skips_nothing(
    spawn: Spawn, backplane: SqliteBackplane, directory: Path, tmp_path: Path
) -> None:
    topic, group = unique("crash-consume"), unique("group")
    backplane.create_topic(topic, 4)
    delivered = backplane.produce(topic, [OutRecord(b"%d" % i, key=b"%d" % i) for i in range(3000)])
    everything = {(d.partition, d.offset) for d in delivered}
    first_out, second_out = tmp_path / "first", tmp_path / "second"
    first = spawn("consume", str(directory), topic, group, str(first_out), "0.01")
    wait_until(lambda: len(read_positions(first_out)) >= 500, "the first consumer to start")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=WAIT_S)
    seen_before = read_positions(first_out)
    assert seen_before != everything  # killed mid-stream
    second = spawn("consume", str(directory), topic, group, str(second_out), "0")
    wait_until(
        lambda: seen_before | read_positions(second_out) >= everything,
        "the restarted consumer to catch up",
    )
    stop(second)
    assert seen_before | read_positions(second_out) == everything
    # It resumed from the committed offsets rather than from the beginning.
    assert len(read_positions(second_out)) < len(everything)


def test_two_consumer_processes_share_a_topic(
    spawn: Spawn, backplane: SqliteBackplane, directory: Path, tmp_path: Path
) -> None:
    topic, group = unique("shared"), unique("group")
    backplane.create_topic(topic, 4)
    outs = [tmp_path / "a", tmp_path / "b"]
    children = [spawn("consume", str(directory), topic, group, str(out), "0") for out in outs]

    def split() -> bool:
        assigned = [last_assignment(out) for out in outs]
        return all(a is not None and len(a) == 2 for a in assigned) and set().union(
            *[a for a in assigned if a]
        ) == {0, 1, 2, 3}

    wait_until(split, "both consumers to hold two partitions")
    delivered = backplane.produce(topic, [OutRecord(b"%d" % i, key=b"%d" % i) for i in range(2000)])
    everything = {(d.partition, d.offset) for d in delivered}
    wait_until(
        lambda: read_positions(outs[0]) | read_positions(outs[1]) >= everything,
        "the two consumers to read everything",
    )
    for child in children:
        stop(child)
    seen = [read_positions(out) for out in outs]
    assert seen[0] and seen[1]
    assert seen[0] | seen[1] == everything
