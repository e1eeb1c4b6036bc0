"""The fleet of role processes the fault tests run on: logs per child and a journal."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modelstream.testing.processes import Fleet, child_env

pytestmark = pytest.mark.integration

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}"


def test_every_start_and_kill_is_a_line_of_the_journal(tmp_path: Path) -> None:
    fleet = Fleet(f"sqlite://{tmp_path / 'bp'}", tmp_path / "logs", child_env({}))
    try:
        first = fleet.start("lister", "topics", "list")
        assert first.process.wait(60) == 0
        fleet.kill("lister")
        second = fleet.restart("lister")
        assert second.process.wait(60) == 0
    finally:
        fleet.stop()
    lines = (tmp_path / "logs" / "fleet.log").read_text().splitlines()
    assert [re.sub(STAMP, "T", line) for line in lines] == [
        f"T start lister pid {first.pid}: topics list",
        f"T killed lister pid {first.pid}",
        f"T start lister pid {second.pid}: topics list",
    ]
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == [
        "fleet.log",
        "lister.1.log",
        "lister.log",
    ]
