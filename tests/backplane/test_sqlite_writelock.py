"""The SQLite engine's write lock: one writer per file across processes, handed over at once.

Real processes (spawned, forked, SIGKILLed) on real files; see
:mod:`modelstream.backplane.sqlite.writelock` for the contract.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.records import OutRecord
from modelstream.backplane.sqlite.writelock import SUFFIX, write_lock
from modelstream.settings import Settings

pytestmark = pytest.mark.integration

WAIT_S = 10.0  # only ever reached when the behaviour under test is broken


def _take(path: str, trying: Any, report: Any) -> None:
    trying.set()
    with write_lock(Path(path)):
        report.put(time.time())


def _hold_forever(path: str, holding: Any) -> None:
    with write_lock(Path(path)):
        holding.set()
        time.sleep(3600)


def _acquired_within(path: Path, seconds: float) -> bool:
    """Whether a thread of this process gets the lock within ``seconds`` (then frees it)."""
    got = threading.Event()

    def take() -> None:
        with write_lock(path):
            got.set()

    threading.Thread(target=take, daemon=True).start()
    return got.wait(seconds)


def test_another_process_waits_until_the_holder_releases(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    ctx = mp.get_context("spawn")
    trying, report = ctx.Event(), ctx.Queue()
    with write_lock(path):
        child = ctx.Process(target=_take, args=(str(path), trying, report))
        child.start()
        assert trying.wait(WAIT_S)
        time.sleep(0.3)  # the child is at the lock by now, and must still be waiting
        assert report.empty()
        released = time.time()
    acquired = report.get(timeout=WAIT_S)
    child.join(WAIT_S)
    assert acquired >= released
    assert (tmp_path / f"t.db{SUFFIX}").exists()


def test_a_holder_killed_mid_write_does_not_block_the_others(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    ctx = mp.get_context("spawn")
    holding = ctx.Event()
    child = ctx.Process(target=_hold_forever, args=(str(path), holding))
    child.start()
    try:
        assert holding.wait(WAIT_S)
        assert not _acquired_within(path, 0.2)  # held by the child
    finally:
        os.kill(child.pid or 0, signal.SIGKILL)
        child.join(WAIT_S)
    assert _acquired_within(path, WAIT_S)


def test_a_forked_child_has_its_own_lock_and_waits_for_the_parents(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    read_end, write_end = os.pipe()
    with write_lock(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
            pid = os.fork()
        if pid == 0:  # the child: only os._exit leaves it
            code = 3
            try:
                got = threading.Event()

                def take() -> None:
                    with write_lock(path):
                        got.set()

                threading.Thread(target=take, daemon=True).start()
                os.write(write_end, b"t")
                # 1: it got the parent's lock (the inherited flock); 2: never got it
                # after the parent let go (a parent's thread lock inherited, held).
                code = 1 if got.wait(0.3) else 0 if got.wait(WAIT_S) else 2
            finally:
                os._exit(code)
        assert os.read(read_end, 1) == b"t"
        time.sleep(1.5)  # the child checks, at 0.3 s, that it is still waiting
    _, status = os.waitpid(pid, 0)
    os.close(read_end)
    os.close(write_end)
    assert os.waitstatus_to_exitcode(status) == 0


def test_without_a_sidecar_the_lock_still_serialises_this_processes_threads(
    tmp_path: Path,
) -> None:
    path = tmp_path / "no-such-directory" / "t.db"  # the sidecar cannot be created
    with write_lock(path):
        assert not _acquired_within(path, 0.2)
    assert _acquired_within(path, WAIT_S)


def test_deleting_a_topic_removes_its_sidecar(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}"
    backplane = open_backplane(url, Settings(backplane=url))
    try:
        backplane.create_topic("t", 1)
        backplane.produce("t", [OutRecord(b"v")])
        assert list((tmp_path / "topics").glob(f"*{SUFFIX}"))
        backplane.delete_topic("t")
        assert not list((tmp_path / "topics").glob(f"*{SUFFIX}"))
    finally:
        backplane.close()
