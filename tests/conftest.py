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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with a slow test run first, the quick ones after (each module kept whole,
    in its order). With ``-n``, workers take modules in this order (``--dist loadscope
    --no-loadscope-reorder``), so the quick modules fill the end of the run in, instead
    of one worker finishing a two-minute module alone while the other waits."""
    slow = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in slow)
