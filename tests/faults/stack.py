"""A whole modelstream deployment, one process per role, for the fault tests.

Two services share the roles:

* ``plain`` (no feature set): a real ONNX logistic regression; stream clients produce
  straight onto ``<plain>.requests``;
* ``feat`` (with a feature set): a real ONNX model echoing its ``features`` input; requests
  ride ``<feat>.events`` through the featurizer, as the gateway sends them.

The processes, each through the real CLI: two gateways (``gateway-a`` is the one a test
kills, ``gateway-b`` keeps serving), ``rendezvous``, ``scorer`` and ``featurizer`` (all of
them ``modelstream run ROLE``), and ``archiver`` (``modelstream archive run``) of the
plain service. Children use ``MODELSTREAM_SESSION_TIMEOUT_MS=3000`` so a killed member
leaves its group within 3 s.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.port import Backplane
from modelstream.models.registry import Registry
from modelstream.settings import Settings
from modelstream.testing.broker import free_port
from modelstream.testing.processes import Fleet, child_env
from modelstream.testing.sklearn import onnx_classifier
from modelstream.wire.topics import ServiceTopics
from tests.features.helpers import echo_model

from .traffic import HttpLoad, Sent, StreamLoad, Tally

PARTITIONS = 2
SESSION_TIMEOUT_MS = 3000
# Long enough that a request held up by a role being restarted is still answered by a
# model, not by the deadline: the counts then show recovery, not timeouts.
DEADLINE_MS = 15_000
FEATURES_YAML = """
name: faults
version: 1
out_of_orderness_ms: 0
allowed_lateness_ms: 600000
features:
  - {name: events, agg: count, window: {hopping: [3600000, 60000]}}
"""
ROLES = ("scorer", "rendezvous", "gateway", "featurizer", "archiver")


def wait_until(
    what: str, condition: Callable[[], bool], timeout_s: float, every: float = 0.1
) -> None:
    """Poll ``condition`` until it holds; ``TimeoutError`` naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(every)


@dataclass
class Stack:
    """The deployment, its processes, and a tally of what the services answered."""

    url: str
    workdir: Path
    settings: Settings
    backplane: Backplane
    plain: str
    feat: str
    fleet: Fleet
    tally: Tally
    reply_topic: str
    ports: dict[str, int]
    x: npt.NDArray[np.float32]
    loads: list[Sent] = field(default_factory=list)

    def gateway_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def archive_root(self) -> Path:
        return self.workdir / "archive"

    def check_alive(self) -> None:
        dead = [c.name for c in self.fleet.dead()]
        if dead:
            raise RuntimeError(f"roles exited on their own: {dead}\n{self.fleet.describe_dead()}")

    def stream_load(self, tag: str, deadline_ms: int = DEADLINE_MS) -> StreamLoad:
        return StreamLoad(
            self.backplane, self.plain, self.feat, self.x,
            tag=tag, reply_to=self.reply_topic, deadline_ms=deadline_ms,
        )  # fmt: skip

    def http_load(self, gateway: str, tag: str, deadline_ms: int = DEADLINE_MS) -> HttpLoad:
        return HttpLoad(
            self.gateway_url(gateway), self.plain, self.feat, self.x,
            tag=tag, deadline_ms=deadline_ms,
        )  # fmt: skip


def deploy(backplane: Backplane, settings: Settings, plain: str, feat: str, workdir: Path) -> None:
    """Topics, models and deployments of both services (what `modelstream deploy` does)."""
    for service in (plain, feat):
        t = ServiceTopics(service)
        for topic in (t.requests, t.scores, t.results):
            backplane.create_topic(topic, PARTITIONS)
    backplane.create_topic(ServiceTopics(feat).events, PARTITIONS)
    registry = Registry(backplane, settings)
    lr, _ = onnx_classifier("logreg", features=4, seed=0)
    ref = registry.publish(plain, "lr", lr, format="onnx").ref
    registry.deploy(plain, ref, deadline_ms=DEADLINE_MS, partitions=PARTITIONS)
    features = workdir / "features.yaml"
    features.write_text(FEATURES_YAML)
    ref = registry.publish(feat, "echo", echo_model(1), format="onnx").ref
    registry.deploy(
        feat, ref, deadline_ms=DEADLINE_MS, partitions=PARTITIONS, feature_set=str(features)
    )


def start_roles(fleet: Fleet, plain: str, feat: str, ports: dict[str, int]) -> None:
    both = ("--service", plain, "--service", feat)
    for name, port in ports.items():
        fleet.start(name, "run", "gateway", *both, "--host", "127.0.0.1", "--port", str(port))
    fleet.start("rendezvous", "run", "rendezvous", *both)
    fleet.start("scorer", "run", "scorer", *both)
    fleet.start("featurizer", "run", "featurizer", "--service", feat)
    fleet.start("archiver", "archive", "run", "--service", plain, "--flush-seconds", "0.5")


def wait_ready(stack: Stack, timeout_s: float) -> None:
    """Bounded: both gateways ready, and a probe through every path answered."""
    deadline = time.monotonic() + timeout_s

    def left() -> float:
        stack.check_alive()
        return max(1.0, deadline - time.monotonic())

    for name in stack.ports:

        def ready(name: str = name) -> bool:
            left()
            with contextlib.suppress(httpx.HTTPError):
                url = f"{stack.gateway_url(name)}/v2/health/ready"
                return httpx.get(url, timeout=2).status_code == 200
            return False

        wait_until(f"{name} ready", ready, left(), every=0.3)
    stop = threading.Event()
    probe = stack.stream_load("probe")
    probe.run(20, 1000.0, 5.0, stop)
    for name in stack.ports:
        http = stack.http_load(name, f"probe-{name}")
        http.run(4, 100.0, 5.0, stop)
        assert len(http.sent.acked()) == 4, f"{name} did not answer its probes: {http.sent}"
    acked = probe.sent.acked()
    assert len(acked) == 20, probe.sent.failures
    wait_until("probe requests answered", lambda: not stack.tally.unanswered(acked), left())


@contextlib.contextmanager
def running_stack(
    url: str, workdir: Path, tag: str, *, connect_timeout_s: float | None = None
) -> Iterator[Stack]:
    """Deploy both services, start every role as a process, yield once all answer.

    ``connect_timeout_s`` (for the test process and every role) bounds how long a call
    waits for an unreachable broker before raising ``BackplaneUnavailable``.
    """
    timeouts = {} if connect_timeout_s is None else {"connect_timeout_s": connect_timeout_s}
    settings = Settings(
        backplane=url,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        default_partitions=PARTITIONS,
        **timeouts,
    )
    backplane = open_backplane(url, settings)
    plain, feat = f"fp-{tag}", f"ff-{tag}"
    env = child_env(
        {
            "MODELSTREAM_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
            "MODELSTREAM_DEFAULT_PARTITIONS": str(PARTITIONS),
            "MODELSTREAM_ARCHIVE_DIR": str(workdir / "archive"),
            **{f"MODELSTREAM_{k.upper()}": str(v) for k, v in timeouts.items()},
        }
    )
    fleet = Fleet(url, workdir / "logs", env)
    tally: Tally | None = None
    try:
        deploy(backplane, settings, plain, feat, workdir)
        reply_topic = ServiceTopics(plain).replies(f"faults-{tag}")
        backplane.create_topic(reply_topic, 1)
        ports = {"gateway-a": free_port(), "gateway-b": free_port()}
        start_roles(fleet, plain, feat, ports)
        tally = Tally(backplane, (plain, feat), reply_topic)
        x = onnx_classifier("logreg", features=4, seed=0)[1].x
        stack = Stack(url, workdir, settings, backplane, plain, feat, fleet, tally, reply_topic,
                      ports, x)  # fmt: skip
        wait_ready(stack, timeout_s=180)
        yield stack
    finally:
        fleet.stop()
        if tally is not None:
            tally.stop()
        backplane.close()
