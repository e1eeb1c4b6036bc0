"""Fixtures shared by the whole suite: the real Kafka-protocol broker (tansu) on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from modelstream.testing.broker import TansuBroker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """The bootstrap address ``127.0.0.1:PORT`` of a tansu broker started for this session.

    Memory storage, a fresh port, killed at the end of the session. Tests keep their
    topics and groups apart by name, since they share this broker.
    """
    with TansuBroker.start() as broker:
        yield broker.bootstrap
