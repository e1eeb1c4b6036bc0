"""The engines the backplane contract suite runs against.

``backplane_factory`` opens handles on one backplane per test: for ``memory`` every
handle is the same object (it lives in this process); for ``sqlite`` each call opens a
new :class:`SqliteBackplane` on the same directory, as a second process would. Engines
are added by adding a maker to ``MAKERS`` and its name to ``ENGINES``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelstream.backplane.memory import MemoryBackplane
from modelstream.backplane.port import Backplane
from modelstream.backplane.sqlite.engine import SqliteBackplane
from modelstream.settings import Settings

Factory = Callable[[], Backplane]

# A short session timeout keeps the tests that wait for a dead member's lease quick.
SESSION_TIMEOUT_MS = 1000


def _memory(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    shared = MemoryBackplane(
        Settings(backplane="memory://", default_partitions=4, session_timeout_ms=SESSION_TIMEOUT_MS)
    )
    return lambda: shared


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    directory = tmp_path / "backplane"
    settings = Settings(
        backplane=f"sqlite://{directory}",
        default_partitions=4,
        session_timeout_ms=SESSION_TIMEOUT_MS,
    )
    return lambda: SqliteBackplane(directory, settings)


def _kafka(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    from modelstream.backplane.kafka.engine import KafkaBackplane

    brokers: str = request.getfixturevalue("kafka_broker")
    # A group join takes half the session timeout on tansu: 3 s keeps joins quick.
    settings = Settings(
        backplane=f"kafka://{brokers}", default_partitions=4, session_timeout_ms=3000
    )
    return lambda: KafkaBackplane(brokers, settings)


MAKERS: dict[str, Callable[[pytest.FixtureRequest, Path], Factory]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "kafka": _kafka,
}
ENGINES = [
    "memory",
    "sqlite",
    pytest.param("kafka", marks=(pytest.mark.kafka, pytest.mark.integration)),
]


@pytest.fixture(params=ENGINES)
def backplane_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """Opens handles on the test's backplane; every handle is closed after the test."""
    make = MAKERS[request.param](request, tmp_path)
    opened: list[Backplane] = []

    def factory() -> Backplane:
        handle = make()
        opened.append(handle)
        return handle

    yield factory
    for handle in reversed(opened):
        handle.close()


@pytest.fixture
def backplane(backplane_factory: Factory) -> Backplane:
    """The first handle on the test's backplane."""
    return backplane_factory()
