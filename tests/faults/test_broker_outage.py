"""A Kafka broker that goes away and comes back: the roles reconnect on their own.

Its own tansu broker, with memory storage, which a restart would wipe; so the outage is
one of two network failures, each a parameter of the test:

* ``frozen``: the broker process is stopped with SIGSTOP and resumed with SIGCONT; every
  connection stays open and nothing answers (a partition, or a broker stuck in GC);
* ``refused``: the broker sits behind a :class:`~modelstream.testing.gate.TcpGate` that
  it advertises, and the gate is shut: every open connection is reset and every new one
  is refused (a broker whose host is up but whose port is closed), then opened again.

Every role runs as a process of its own (:mod:`.stack`), with
``MODELSTREAM_CONNECT_TIMEOUT_S=2`` so that calls give up (``BackplaneUnavailable``) well
within the outage, which outlasts the group session timeout (3 s) too: groups fall apart
and rebalance when the broker is back.

Under steady load the broker goes away for ``OUTAGE_S``, comes back, and the load goes on;
then a second stretch of load starts after the recovery. Nobody restarts anything. The
test checks what an operator would:

* every role process is still running (none gave up);
* every acknowledged request of both stretches has exactly one answer (0 lost, 0 twice);
* requests sent after the broker came back are answered (the time from the broker's return to
  the first such answer is the recovery time in the report), and every acknowledged one of
  the stretch after the recovery is answered *by a model* (not by its deadline or an
  error), with no second reply on its ``reply_to`` topic. During the outage a request
  the gateway accepted may be answered by an error or its deadline (the scorers cannot
  reach the broker): those are counted in ``acknowledged_kinds``, not asserted.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modelstream.backplane.records import now_ms
from modelstream.testing.broker import TansuBroker, free_port
from modelstream.testing.gate import TcpGate

from .conftest import Reliability
from .phase import Steady, counts, settle
from .stack import running_stack

pytestmark = [pytest.mark.integration, pytest.mark.kafka, pytest.mark.slow]

OUTAGE_S = 6.0
AFTER_S = 3.0


@dataclass
class Outage:
    url: str
    begin: Callable[[], None]
    end: Callable[[], None]
    injected: str


@pytest.fixture(params=["frozen", "refused"])
def outage(request: pytest.FixtureRequest) -> Iterator[Outage]:
    """A broker of this test's own (an outage of the suite's shared one would hurt
    others), and the way it goes away and comes back."""
    if request.param == "frozen":
        with TansuBroker.start() as broker:
            pid = broker.process.pid
            try:
                yield Outage(
                    broker.url,
                    lambda: os.kill(pid, signal.SIGSTOP),
                    lambda: os.kill(pid, signal.SIGCONT),
                    f"broker frozen (SIGSTOP) for {OUTAGE_S:.0f} s, then SIGCONT",
                )
            finally:
                if broker.process.poll() is None:
                    os.kill(pid, signal.SIGCONT)  # never leave it frozen
        return
    broker_port = free_port()
    gate = TcpGate(broker_port)
    with gate, TansuBroker.start(broker_port, advertised_port=gate.port) as broker:
        yield Outage(
            broker.url,
            gate.shut,
            gate.open,
            f"broker port closed for {OUTAGE_S:.0f} s (open connections reset, new ones "
            "refused), then opened",
        )


def test_roles_reconnect_after_the_broker_comes_back(
    outage: Outage, tmp_path: Path, reliability: Reliability, request: pytest.FixtureRequest
) -> None:
    tag = uuid.uuid4().hex[:6]
    with running_stack(outage.url, tmp_path, tag, connect_timeout_s=2.0) as stack:
        with Steady(stack, tag="o-during", max_s=OUTAGE_S + 4) as during:
            during.wait_acked(240, timeout_s=30)
            frozen_at = now_ms()
            outage.begin()
            during.pause(OUTAGE_S)
            outage.end()
            thawed_at = now_ms()
        with Steady(stack, tag="o-after", max_s=AFTER_S) as after:
            after.pause(AFTER_S)
        stack.check_alive()
        settle(stack, during.acked() | after.acked(), timeout_s=120)
        stack.check_alive()
        first_after = stack.tally.read(
            lambda t: min(
                (
                    t.answered_at[r]
                    for s in (*during.sents, *after.sents)
                    for r, at in s.sent_at.items()
                    if at >= thawed_at and r in t.answered_at
                ),
                default=None,
            )
        )
        figures: dict[str, Any] = {
            "during": counts(stack, during),
            "after": counts(stack, after),
            "backplane": "kafka",
            "injected": f"{outage.injected}; no role restarted",
            "outage_s": round((thawed_at - frozen_at) / 1000, 2),
            "recovery_s": None
            if first_after is None
            else round((first_after - thawed_at) / 1000, 2),
            "roles_alive": sorted(c.name for c in stack.fleet.children.values() if c.alive),
        }
        reliability.record(request.node.nodeid.split("::")[-1], figures)

    for stretch in ("during", "after"):
        assert figures[stretch]["lost"] == 0, f"acknowledged requests lost: {figures}"
        assert figures[stretch]["answered_twice"] == 0, f"requests answered twice: {figures}"
    assert figures["after"]["acknowledged_stream"] > 0, figures
    assert figures["after"]["acknowledged_http"] > 0, figures
    assert first_after is not None, "no request sent after the outage was answered"
    after = figures["after"]
    assert after["acknowledged_kinds"] == {"model": after["acknowledged"]}, figures
    assert after["replied_twice"] == 0, figures
