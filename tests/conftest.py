"""Fixtures shared by the whole suite: the real Kafka-protocol broker (tansu) on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from modelstream.testing.broker import TansuBroker

# pytest-xdist's workers inherit COLUMNS=80 from it. The CLI's Rich consoles read COLUMNS
# once, when their module is imported (at collection), which would then fix every table
# of a worker at 80 columns whatever width a test asks of its CliRunner. Without it, a
# worker renders as a serial run does.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """The bootstrap address ``127.0.0.1:PORT`` of a tansu broker started for this session.

    Memory storage, a fresh port, killed at the end of the session. Tests keep their
    topics and groups apart by name, since they share this broker.
    """
    with TansuBroker.start() as broker:
        yield broker.bootstrap
