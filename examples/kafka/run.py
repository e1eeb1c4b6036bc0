"""A real multi-process deployment of modelstream on Kafka, on one machine.

    python examples/kafka/run.py                      # starts its own tansu broker
    python examples/kafka/run.py --bootstrap HOST:PORT --kill-scorer-after 4

Starts a Kafka-protocol broker (tansu; any Kafka in production), publishes two real
ONNX models and deploys them as one service (requests topic with 4 partitions), then
starts every role as a process of its own through the ``modelstream`` CLI: the gateway,
the rendezvous, two scorer processes of the champion and one of the challenger, the
archiver, the monitor and the trainer. It drives load through HTTP and straight onto
Kafka, optionally SIGKILLs one champion scorer mid-load, waits (bounded) for every
acknowledged request to be answered, stops everything and prints a summary (also
written as JSON with ``--summary``). See README.md next to this file.

Exit status: 0 when no acknowledged request was lost or answered twice and no role
died unasked; 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from signal import SIGINT
from types import FrameType
from typing import Any

import httpx
from load import HttpLoad, KafkaLoad, Sent, send_labels
from report import Run, last_snapshot, print_summary, summarize, write_json
from tally import Tally

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.port import Backplane
from modelstream.backplane.records import now_ms
from modelstream.models.registry import Registry
from modelstream.settings import Settings
from modelstream.testing.broker import TansuBroker, free_port
from modelstream.testing.processes import Fleet, child_env
from modelstream.testing.sklearn import make_dataset, onnx_classifier
from modelstream.wire.topics import ServiceTopics

CHAMPION, CHALLENGER = "lr", "gbm"
HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", help="HOST:PORT of a running broker (default: start tansu)")
    p.add_argument("--service", default=f"kafka-demo-{uuid.uuid4().hex[:6]}")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--deadline-ms", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=12.0, help="how long the load runs at most")
    p.add_argument("--http-requests", type=int, default=300)
    p.add_argument("--http-rate", type=float, default=25.0, help="HTTP requests per second")
    p.add_argument("--kafka-requests", type=int, default=600)
    p.add_argument("--kafka-rate", type=float, default=50.0, help="Kafka requests per second")
    p.add_argument(
        "--kill-scorer-after",
        type=float,
        default=None,
        metavar="SECONDS",
        help="SIGKILL the second champion scorer this long into the load",
    )
    p.add_argument("--session-timeout-ms", type=int, default=3000)
    p.add_argument("--no-trainer", action="store_true", help="do not start the trainer")
    p.add_argument("--start-timeout", type=float, default=90.0)
    p.add_argument("--drain-timeout", type=float, default=30.0)
    p.add_argument("--workdir", type=Path, default=None, help="logs, archive, model files")
    p.add_argument("--summary", type=Path, default=None, help="write the summary as JSON here")
    return p.parse_args(argv)


def wait_until(
    what: str, condition: Callable[[], bool], timeout_s: float, every: float = 0.2
) -> None:
    """Poll ``condition`` until it holds; ``TimeoutError`` naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(every)


def publish_and_deploy(
    backplane: Backplane, settings: Settings, args: argparse.Namespace, models_dir: Path
) -> str:
    """Topics with ``partitions`` partitions, two ONNX models, one deployment; the input name.

    The same as ``modelstream topics create``, ``models publish`` and ``deploy`` from the
    shell (README.md); done in-process here only to save a CLI start-up per step.
    """
    service, partitions = args.service, args.partitions
    topics = ServiceTopics(service)
    # requests, scores and results are co-partitioned: same count, keyed by request id.
    for topic in (topics.requests, topics.scores, topics.results):
        backplane.create_topic(topic, partitions)
    registry = Registry(backplane, settings)
    models_dir.mkdir(parents=True, exist_ok=True)
    refs = []
    trained = {
        CHAMPION: onnx_classifier("logreg", seed=0),
        CHALLENGER: onnx_classifier("gbm", trees=30),
    }
    for name, (data, _) in trained.items():
        (models_dir / f"{name}.onnx").write_bytes(data)
        refs.append(registry.publish(service, name, data, format="onnx").ref)
    registry.deploy(
        service,
        refs[0],
        [refs[1]],
        deadline_ms=args.deadline_ms,
        partitions=partitions,
        reason="examples/kafka",
    )
    return "input"


def start_roles(fleet: Fleet, service: str, port: int, trainer: bool) -> None:
    """Every role a process of its own, through the CLI (see README.md for each command)."""
    s = ("--service", service)
    fleet.start("gateway", "run", "gateway", *s, "--host", "127.0.0.1", "--port", str(port))
    fleet.start("rendezvous", "run", "rendezvous", *s)
    fleet.start(f"scorer-{CHAMPION}-1", "run", "scorer", *s, "--model", CHAMPION)
    fleet.start(f"scorer-{CHAMPION}-2", "run", "scorer", *s, "--model", CHAMPION)
    fleet.start(f"scorer-{CHALLENGER}-1", "run", "scorer", *s, "--model", CHALLENGER)
    fleet.start("archiver", "archive", "run", *s, "--flush-seconds", "1")
    # monitor and train stop cleanly on Ctrl-C (SIGINT); the other roles on SIGTERM too.
    fleet.start("monitor", "monitor", service, "--json", "--refresh", "1", stop_signal=SIGINT)
    if trainer:
        trainer_args = ("--function", "training:train", "--every", "5", "--no-publish")
        fleet.start("trainer", "train", *s, *trainer_args, stop_signal=SIGINT)


def wait_ready(
    args: argparse.Namespace, fleet: Fleet, tally: Tally, gateway: str, probe: KafkaLoad
) -> None:
    """Bounded: gateway ready, every scorer loaded, each scorer process owning partitions."""
    deadline: float = time.monotonic() + args.start_timeout

    def left() -> float:
        if fleet.dead():
            names = ", ".join(f"{c.name}: {c.tail(300)}" for c in fleet.dead())
            raise RuntimeError(f"a role exited during start-up: {names}")
        return max(0.1, deadline - time.monotonic())

    def loaded() -> bool:
        left()
        got = tally.read(lambda t: {m: len(ids) for m, ids in t.loaded.items()})
        return got.get(CHAMPION, 0) >= 2 and got.get(CHALLENGER, 0) >= 1

    wait_until("scorers loaded their models", loaded, left())

    def gateway_ready() -> bool:
        left()
        try:
            return httpx.get(f"{gateway}/v2/health/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until("gateway ready", gateway_ready, left(), every=0.5)
    # Probe records until both champion scorer processes have scored (the group has
    # settled on two members) and the rendezvous answers: then the load can start.
    stop = threading.Event()
    sent = 0

    def settled() -> bool:
        nonlocal sent
        left()
        probe.run(8, 1000.0, 5.0, stop)
        sent += 8
        answered = tally.read(lambda t: sum(1 for r in probe.sent.acknowledged if t.answers[r]))
        return (
            len(tally.scorers_of(CHAMPION)) >= 2
            and len(tally.scorers_of(CHALLENGER)) >= 1
            and answered > 0
        )

    wait_until("both champion scorers own partitions", settled, left(), every=0.5)


def drive(args: argparse.Namespace, fleet: Fleet, http: HttpLoad, kafka: KafkaLoad) -> int | None:
    """Run both loads together; SIGKILL a champion scorer when asked. The kill time (ms)."""
    stop = threading.Event()
    threads = [
        threading.Thread(target=driver.run, args=(count, rate, args.seconds, stop))
        for driver, count, rate in (
            (http, args.http_requests, args.http_rate),
            (kafka, args.kafka_requests, args.kafka_rate),
        )
    ]
    for t in threads:
        t.start()
    killed_at = None
    try:
        if args.kill_scorer_after is not None:
            time.sleep(args.kill_scorer_after)
            killed_at = fleet.kill(f"scorer-{CHAMPION}-2").killed_at_ms
            print(f"SIGKILLed scorer-{CHAMPION}-2 at +{args.kill_scorer_after:.1f} s", flush=True)
    finally:
        for t in threads:
            t.join(args.seconds + 30)
        stop.set()
    return killed_at


def drained(tally: Tally, http: Sent, kafka: Sent) -> Callable[[], bool]:
    """Every acknowledged request answered, scored by both models, replied to if by Kafka."""
    acked = http.acknowledged | kafka.acknowledged

    def check(t: Tally) -> bool:
        return all(
            t.answers[r] and CHAMPION in t.scores.get(r, {}) and CHALLENGER in t.scores.get(r, {})
            for r in acked
        ) and all(t.replies[r] for r in kafka.acknowledged)

    return lambda: tally.read(check)


def groups_of(backplane: Backplane, service: str) -> dict[str, dict[str, int]]:
    """Members and total lag of every group reading the requests topic."""
    described = backplane.describe_topic(ServiceTopics(service).requests)
    return {g.group: {"members": g.members, "lag": g.total_lag} for g in described.groups}


def settle(
    backplane: Backplane,
    fleet: Fleet,
    tally: Tally,
    service: str,
    *,
    http: Sent,
    kafka: Sent,
    labels_at: int,
    drain_s: float,
) -> None:
    """Bounded waits for the end state; a warning, not a failure, when one times out.

    Every request answered and the champion's group caught up; then, so the summary
    shows them, the monitor's quality over the labels and a trainer cycle that had them.
    """
    champion_group = f"{service}.scorer.{CHAMPION}"

    def monitor_saw_labels() -> bool:
        return bool(last_snapshot(fleet).get("records", {}).get("labels"))

    def trainer_ran() -> bool:
        return tally.read(lambda t: any(at > labels_at for _, _, at in t.trainer_events))

    waits: list[tuple[str, Callable[[], bool], float]] = [
        ("every request answered", drained(tally, http, kafka), drain_s),
        (
            "champion scorers caught up",
            lambda: groups_of(backplane, service).get(champion_group, {}).get("lag") == 0,
            10.0,
        ),
        ("the monitor saw the labels", monitor_saw_labels, 10.0),
    ]
    if any(c.name == "trainer" for c in fleet.children.values()):
        waits.append(("a trainer cycle after the labels", trainer_ran, 8.0))
    for what, condition, timeout_s in waits:
        try:
            wait_until(what, condition, timeout_s, every=0.5)
        except TimeoutError as exc:
            print(f"warning: {exc}", flush=True)


def run_example(
    args: argparse.Namespace, backplane: Backplane, settings: Settings, fleet: Fleet, workdir: Path
) -> dict[str, Any]:
    """Deploy, start the roles, drive the load, stop the roles; the summary."""
    service = args.service
    input_name = publish_and_deploy(backplane, settings, args, workdir / "models")
    tag = uuid.uuid4().hex[:6]
    reply_topic = ServiceTopics(service).replies(f"direct-{tag}")
    backplane.create_topic(reply_topic, 1)
    port = free_port()
    gateway = f"http://127.0.0.1:{port}"
    start_roles(fleet, service, port, trainer=not args.no_trainer)
    tally = Tally(backplane, service, reply_topic)
    try:
        data = make_dataset(4000, 4, seed=1)
        x, y = data.x, data.y
        direct: dict[str, Any] = {"reply_to": reply_topic, "deadline_ms": args.deadline_ms}
        probe = KafkaLoad(backplane, service, input_name, x, y, tag=f"{tag}-probe", **direct)
        wait_ready(args, fleet, tally, gateway, probe)
        print(f"all roles up; load for at most {args.seconds:.0f} s", flush=True)
        http = HttpLoad(gateway, service, input_name, x, y, tag=tag)
        kafka = KafkaLoad(backplane, service, input_name, x[1000:], y[1000:], tag=tag, **direct)
        killed_at = drive(args, fleet, http, kafka)
        labels_at = now_ms()
        send_labels(backplane, service, http.sent, kafka.sent)
        settle(
            backplane,
            fleet,
            tally,
            service,
            http=http.sent,
            kafka=kafka.sent,
            labels_at=labels_at,
            drain_s=args.drain_timeout,
        )
        groups = groups_of(backplane, service)
        dead = [c.name for c in fleet.dead()]
    finally:
        tally.stop()
        fleet.stop()  # the archiver flushes, the monitor prints its last snapshot
    killed = f"scorer-{CHAMPION}-2"
    return summarize(
        Run(service, backplane.url, args.partitions, fleet, tally, http.sent, kafka.sent,
            probe.sent, killed_at, killed, groups, dead, workdir)
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="modelstream-kafka-"))

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(143)  # so the finally blocks stop every child

    signal.signal(signal.SIGTERM, on_term)
    broker = None if args.bootstrap else TansuBroker.start()
    try:
        url = f"kafka://{args.bootstrap or broker.bootstrap}"  # type: ignore[union-attr]
        settings = Settings(backplane=url, session_timeout_ms=args.session_timeout_ms)
        pythonpath = [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = child_env(
            {
                # Evict a killed group member within 3 s (the default is 6 s).
                "MODELSTREAM_SESSION_TIMEOUT_MS": str(args.session_timeout_ms),
                "MODELSTREAM_ARCHIVE_DIR": str(workdir / "archive"),
                "PYTHONPATH": os.pathsep.join(pythonpath),  # the trainer's training:train
            }
        )
        fleet = Fleet(url, workdir / "logs", env)
        print(f"broker {url}; service {args.service}; logs in {workdir / 'logs'}", flush=True)
        backplane = open_backplane(url, settings)
        try:
            summary = run_example(args, backplane, settings, fleet, workdir)
        finally:
            fleet.stop()
            backplane.close()
    finally:
        if broker is not None:
            broker.stop()
    print_summary(summary)
    if args.summary:
        write_json(summary, args.summary)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
