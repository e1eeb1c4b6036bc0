"""The proof of issue 6: the loop keeps a model good when the concept changes.

One process runs every role (``Serving`` on a SQLite backplane): rendezvous, scorers,
monitor, archiver, trainer and automatic promotion. A deterministic stream of requests
goes onto ``<service>.requests``; its labels follow on ``<service>.labels`` about a
second later. After ``CHANGE_AT`` requests the concept rotates (the label's weight
vector turns by 90 degrees), so the champion, trained on the old concept, is right only
half of the time. Then, in order: the champion's measured quality drops, a drift alert
fires, the trainer publishes a retrained version of the champion's name with its
lineage and deploys it as a challenger, the challenger beats the champion with
significance on enough labelled requests and is promoted (a deployment record whose
reason states the evidence), and the champion's measured quality recovers to within a
few points of a model trained directly on the new concept.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.linear_model import LogisticRegression

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord, now_ms
from modelstream.gateway.loop import LoopConfig
from modelstream.gateway.serving import Serving
from modelstream.models.deployment import Role
from modelstream.models.descriptor import Lineage
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.monitoring.alerts import AlertKind, decode_alert
from modelstream.monitoring.config import MonitorConfig
from modelstream.monitoring.snapshot import ModelSnapshot
from modelstream.settings import Settings
from modelstream.testing.sklearn import to_onnx
from modelstream.wire.labels import Label
from modelstream.wire.requests import InferenceRequest
from modelstream.wire.tensors import array_to_tensor
from modelstream.wire.topics import ServiceTopics

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
]

SERVICE = "loans"
TOPICS = ServiceTopics(SERVICE)
CHAMPION = ModelRef("lr", 1)
OLD = np.array([1.5, -2.0, 1.0, 0.5])
NEW = np.array([2.0, 1.5, 0.5, -1.0])  # orthogonal to OLD: the old rule is a coin toss
NOISE = 0.3
CHANGE_AT = 300  # requests of the old concept before the change
RATE = 50  # requests per second: modest, the machine is shared
LABEL_LAG_S = 1.0
MIN_LABELS = 150
ALPHA = 0.01
WINDOW = 200  # the monitor's window, in labelled requests

T = TypeVar("T")


def concept(rows: int, seed: int, weights: npt.NDArray[Any]) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(weights))).astype(np.float32)
    y = ((x @ weights + rng.normal(0, NOISE, rows)) > 0).astype(np.int64)
    return x, y


def fitted(weights: npt.NDArray[Any], seed: int) -> tuple[LogisticRegression, float]:
    """A model trained on ``weights``' concept, and its accuracy on a fresh sample of it."""
    x, y = concept(4000, seed, weights)
    model = LogisticRegression(max_iter=500).fit(x, y)
    tx, ty = concept(4000, seed + 1, weights)
    return model, float(model.score(tx, ty))


class Stream:
    """The generated stream (deterministic rows, fixed order); pumps in a thread.

    Requests ``0 .. CHANGE_AT-1`` follow ``OLD``, the rest ``NEW``. The pump sends
    ``RATE`` requests a second (stopping at ``hold_at`` until :meth:`release`), and the
    label of each request ``LABEL_LAG_S`` after it.
    """

    def __init__(self, backplane: Backplane, total: int = 4000) -> None:
        self._bp = backplane
        old = concept(CHANGE_AT, 11, OLD)
        new = concept(total - CHANGE_AT, 12, NEW)
        self.x = np.concatenate([old[0], new[0]])
        self.y = np.concatenate([old[1], new[1]])
        self.sent = 0
        self.labelled = 0
        self.hold_at: int | None = CHANGE_AT
        self._unlabelled: deque[tuple[int, float]] = deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream", daemon=True)
        self.failure: BaseException | None = None

    def start(self) -> Stream:
        for topic in (TOPICS.requests, TOPICS.labels):
            self._bp.create_topic(topic)
        self._thread.start()
        return self

    def release(self) -> None:
        self.hold_at = None

    def _run(self) -> None:
        tick = 0.1
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                self._send(int(RATE * tick))
                self._label(started)
                self._stop.wait(max(0.0, tick - (time.monotonic() - started)))
        except BaseException as exc:  # reported by the test's waits
            self.failure = exc

    def _send(self, n: int) -> None:
        end = min(self.sent + n, len(self.x))
        if self.hold_at is not None:
            end = min(end, self.hold_at)
        records = []
        now = now_ms()
        for i in range(self.sent, end):
            tensor = array_to_tensor("input", self.x[i : i + 1])
            request = InferenceRequest(f"q{i}", SERVICE, now, now + 2000, (tensor,), sent_at=now)
            records.append(OutRecord(request.encode(), request.key, (), now))
            self._unlabelled.append((i, time.monotonic()))
        if records:
            self._bp.produce(TOPICS.requests, records)
        self.sent = end

    def _label(self, now: float) -> None:
        records = []
        while self._unlabelled and now - self._unlabelled[0][1] >= LABEL_LAG_S:
            i, _ = self._unlabelled.popleft()
            label = Label(SERVICE, int(self.y[i]), now_ms(), request_id=f"q{i}")
            records.append(OutRecord(label.encode(), label.key))
        if records:
            self._bp.produce(TOPICS.labels, records)
            self.labelled += len(records)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@dataclass
class Loop:
    backplane: Backplane
    registry: Registry
    serving: Serving
    stream: Stream
    champion_accuracy: float


def wait_for(what: str, probe: Callable[[], T | None], stream: Stream, timeout: float) -> T:
    """Poll ``probe`` until it returns something (bounded); fail saying what never came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stream.failure is not None:
            raise AssertionError(f"the stream failed: {stream.failure!r}")
        value = probe()
        if value is not None:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loop]:
    settings = Settings(backplane=f"sqlite://{tmp_path / 'bp'}", default_partitions=1)
    backplane = open_backplane(settings.backplane, settings)
    registry = Registry(backplane, settings)
    model, accuracy = fitted(OLD, seed=1)
    registry.publish(
        SERVICE,
        CHAMPION.name,
        to_onnx(model, len(OLD)),
        format="onnx",
        lineage=Lineage(created_at=now_ms(), created_by="test", metrics={"accuracy": accuracy}),
    )
    registry.deploy(SERVICE, CHAMPION, deadline_ms=2000)
    config = LoopConfig(
        archive_flush_seconds=0.5,
        monitor=MonitorConfig(
            window_count=WINDOW, reference_size=WINDOW, evaluate_every=50, min_labels=30
        ),
        train="tests.training.functions:train_logreg",
        # The first cycle comes 400 labels (8 s) after the change, when the training
        # window (7 s of event time, less the labels' lag) holds only the new concept.
        train_every_labels=CHANGE_AT + 400,
        train_window_seconds=7.0,
        min_labels=MIN_LABELS,
        alpha=ALPHA,
        promote_every_seconds=1.0,
    )
    serving = Serving(backplane, settings, [SERVICE], gateway=False, loop=config)
    stream = Stream(backplane)
    serving.start(load_timeout=60)
    try:
        stream.start()
        yield Loop(backplane, registry, serving, stream, accuracy)
    finally:
        stream.stop()
        serving.stop()
        backplane.close()


def measured(loop: Loop, ref: ModelRef, at_least: int) -> ModelSnapshot | None:
    snapshot = loop.serving.monitors[0].snapshot()
    model = next((m for m in snapshot.models if m.model == str(ref)), None)
    if model is None or model.labelled < at_least or model.primary_value is None:
        return None
    return model


def test_a_concept_change_is_detected_retrained_promoted_and_recovered(loop: Loop) -> None:
    stream, registry = loop.stream, loop.registry
    # Before the change: the champion is measured at its training quality.
    before = wait_for(
        "the champion's quality on the old concept",
        lambda: measured(loop, CHAMPION, at_least=WINDOW),
        stream,
        60,
    ).primary_value
    assert before is not None and before > 0.9
    stream.release()

    # 1. Its measured quality drops.
    def dropped() -> float | None:
        m = measured(loop, CHAMPION, at_least=WINDOW)
        value = None if m is None else m.primary_value
        return value if value is not None and value < before - 0.25 else None

    after = wait_for("the champion's quality to drop", dropped, stream, 60)

    # 2. A drift alert fires: a record on <service>.alerts about the champion, from
    #    River's ADWIN on its streaming error (a quality_drop alone is not drift detection).
    alerts = loop.backplane.consumer([TOPICS.alerts], start="earliest")
    seen = []

    def drift_alert() -> str | None:
        seen.extend(decode_alert(r.value) for r in alerts.poll(100, timeout=0.2))
        hit = next(
            (a for a in seen if a.model == str(CHAMPION) and a.kind is AlertKind.ERROR_DRIFT), None
        )
        return None if hit is None else hit.message

    try:
        alert = wait_for("a drift alert", drift_alert, stream, 30)
    finally:
        alerts.close()

    # 3-5. The trainer publishes, deploys as a challenger, and the challenger is promoted.
    def promoted() -> ModelRef | None:
        champion = registry.deployment(SERVICE).champion
        return None if champion is None or champion.ref == CHAMPION else champion.ref

    winner = wait_for("a retrained version to be promoted", promoted, stream, 75)
    history = registry.history(SERVICE)
    # A new version of the champion's name, with its lineage.
    assert winner.name == CHAMPION.name and winner.version > CHAMPION.version
    lineage = registry.descriptor(SERVICE, winner).lineage
    assert lineage.created_by == "trainer" and lineage.parent_version is not None
    assert lineage.training.rows >= 20 and lineage.training.start is not None
    assert lineage.training.end is not None and lineage.training.start <= lineage.training.end
    assert lineage.metrics["holdout_accuracy"] > lineage.metrics["champion_holdout_accuracy"]
    # It was deployed as a challenger beside the champion before it was promoted.
    as_challenger = next(
        i
        for i, d in enumerate(history)
        if (live := d.live_ref(winner)) is not None and live.role is Role.CHALLENGER
    )
    assert history[as_challenger].reason.startswith("trainer:")
    promotion = next(d for d in history if d.champion is not None and d.champion.ref == winner)
    assert promotion.reason.startswith(f"auto-promote {winner} over ")
    promoter = loop.serving.promoter
    assert promoter is not None
    verdict = next(v for v in promoter.promotions if v.challenger == winner)
    comparison = verdict.comparison
    assert comparison is not None and comparison.winner == winner
    assert comparison.p_value < ALPHA and comparison.n_paired >= MIN_LABELS
    assert f"on {comparison.n_paired} labelled requests" in promotion.reason

    # 6. After the promotion, the champion's quality recovers to within 5 points of a
    # model trained directly on the new concept, over a window of post-promotion traffic.
    labelled_at_promotion = stream.labelled

    def recovered() -> tuple[ModelRef, float] | None:
        if stream.labelled < labelled_at_promotion + WINDOW:
            return None
        champion = registry.deployment(SERVICE).champion
        assert champion is not None
        m = measured(loop, champion.ref, at_least=WINDOW)
        return None if m is None or m.primary_value is None else (champion.ref, m.primary_value)

    final_ref, final = wait_for("post-promotion quality", recovered, stream, 30)
    _, reference = fitted(NEW, seed=2)
    print(
        f"\nloop proof: champion {CHAMPION} accuracy {before:.3f} before the change "
        f"(training {loop.champion_accuracy:.3f}), {after:.3f} after; alert: {alert}; "
        f"promoted {winner} (trained on {lineage.training.rows} rows; "
        f"p = {comparison.p_value:.3g} on {comparison.n_paired} "
        f"labelled requests: {comparison.b.primary.value:.3f} vs "
        f"{comparison.a.primary.value:.3f}); final champion {final_ref} accuracy "
        f"{final:.3f}; trained on the new concept {reference:.3f}"
    )
    assert final >= reference - 0.05
