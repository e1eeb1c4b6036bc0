"""Fixtures of the fault tests: a running deployment per backplane, and the report.

``stack`` is session-scoped and parametrized over the backplanes (SQLite, and Kafka on
the suite's tansu broker): every role runs as a process of its own, started through
the CLI, and the kill and poison tests take turns injecting faults into the same stack.

``reliability`` collects each test's figures and, at the end of the session and only
with ``MODELSTREAM_WRITE_RESULTS=1`` in the environment, merges them into the tracked
``benchmarks/results/reliability.json`` (by test id, so running one file keeps the
figures of the others); ``benchmarks/reliability_report.py`` renders that file into
``docs/reliability.md``. Without the variable (CI, everyday runs) the tree stays clean.
"""

from __future__ import annotations

import json
import os
import platform
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from .stack import Stack, running_stack

REPORT = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "reliability.json"
WRITE_RESULTS = "MODELSTREAM_WRITE_RESULTS"


class Reliability:
    """Figures per test id, written once at the end of the session."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}

    def record(self, test_id: str, figures: dict[str, Any]) -> None:
        self.entries[test_id] = {**figures, "at": datetime.now(UTC).isoformat(timespec="seconds")}

    def write(self, path: Path = REPORT) -> None:
        if not self.entries:
            return
        old: dict[str, Any] = {}
        if path.exists():
            old = json.loads(path.read_text()).get("tests", {})
        merged = {**old, **self.entries}
        doc = {
            "machine": f"{platform.system()} {platform.machine()}, "
            f"python {platform.python_version()}",
            "tests": dict(sorted(merged.items())),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")


@pytest.fixture(scope="session")
def reliability() -> Iterator[Reliability]:
    report = Reliability()
    yield report
    if os.environ.get(WRITE_RESULTS) == "1":
        report.write()


@pytest.fixture(scope="session", params=["sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Every role of two services as processes of their own, over one backplane.

    Session-scoped: the kill and the poison tests take turns on the same stack (pytest
    runs every test of one backplane before starting the other's stack), and each
    leaves it serving, which each checks on entry (``Stack.check_alive``).
    """
    backend: str = request.param
    if backend == "kafka":
        bootstrap: str = request.getfixturevalue("kafka_broker")
        workdir = tmp_path_factory.mktemp("faults-kafka")
        url = f"kafka://{bootstrap}"
    else:
        workdir = tmp_path_factory.mktemp("faults-sqlite")
        url = f"sqlite://{workdir / 'bp'}"
    with running_stack(url, workdir, uuid.uuid4().hex[:6]) as running:
        yield running
