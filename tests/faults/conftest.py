"""Fixtures of the fault tests: a running deployment per backplane, and the report.

The running deployment, ``stack``, is a fixture of the ``processes`` package, whose
tests are the only ones to use it (see ``processes/conftest.py``).

``reliability`` collects each test's figures and, at the end of the session and only
with ``MODELSTREAM_WRITE_RESULTS=1`` in the environment, merges them into the tracked
``benchmarks/results/reliability.json`` (by test id, so running one file keeps the
figures of the others); ``benchmarks/reliability_report.py`` renders that file into
``docs/reliability.md``. Without the variable (CI, everyday runs) the tree stays clean.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

REPORT = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "reliability.json"
WRITE_RESULTS = "MODELSTREAM_WRITE_RESULTS"


class Reliability:
    """Figures per test id, written once at the end of the session."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}

    def record(self, test_id: str, figures: dict[str, Any]) -> None:
        self.entries[test_id] = {**figures, "at": datetime.now(UTC).isoformat(timespec="seconds")}

    def write(self, path: Path = REPORT) -> None:
        """Merge these entries into ``path``. Under pytest-xdist every worker merges its
        own at its session's end: a lock file makes each read-merge-write whole, so no
        worker's figures overwrite another's."""
        if not self.entries:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            old: dict[str, Any] = {}
            if path.exists():
                old = json.loads(path.read_text()).get("tests", {})
            merged = {**old, **self.entries}
            doc = {
                "machine": f"{platform.system()} {platform.machine()}, "
                f"python {platform.python_version()}",
                "tests": dict(sorted(merged.items())),
            }
            path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")


@pytest.fixture(scope="session")
def reliability() -> Iterator[Reliability]:
    report = Reliability()
    yield report
    if os.environ.get(WRITE_RESULTS) == "1":
        report.write()
