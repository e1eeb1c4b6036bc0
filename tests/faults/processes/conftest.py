"""The running deployment the kill and poison-under-load tests inject faults into.

``stack`` is package-scoped and parametrized over the backplanes (SQLite, and Kafka on
the suite's tansu broker): every role runs as a process of its own, started through the
CLI, and the tests of this package take turns on the same stack (pytest runs every test
of one backplane before starting the other's stack). Each test leaves it serving, which
each checks on entry (``Stack.check_alive``).

Why a package of its own: a package-scoped fixture lives until the package's last test.
An idle stack still polls its backplane (on Kafka, it and the broker take about 0.6 of
a core), so the stacks stop here, before the other fault tests and the rest of the suite
run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.faults.stack import Stack, running_stack


@pytest.fixture(scope="package", params=["sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Every role of two services as processes of their own, over one backplane."""
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
