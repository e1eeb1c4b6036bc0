"""The demo's director: the fleet's clock, its labels, the drift, and what the loop did.

:class:`Story` runs two threads beside :class:`~modelstream.gateway.serving.Serving`:

* **the world**: every simulated minute it advances the :class:`~.fleet.Fleet` to the
  current event time, writes the readings that reach the stream (some out of order,
  some late) onto ``<service>.events``, writes the labels that became known onto
  ``<service>.labels`` (by request id), and at ``drift_at_s`` changes the world (not
  before the first answer was served: the story's 'before the drift' needs answers, and
  on a busy machine the first one can come late);
* **the watcher**: every second it reads the monitor (the champion's measured quality,
  new alerts), the deployment timeline, and the loop's promotions. After the drift, the
  first alert makes it retrain: once enough labels about requests since the drift have
  arrived (the trainer's ``min_rows``; counted as they are written, so the archive is
  not read in vain), the serving loop's trainer runs a cycle on the labelled archive
  since the drift and deploys the new version as a challenger. Once ``min_labels``
  labels about requests since it went live have arrived, it is judged every few
  seconds: :func:`~modelstream.rendezvous.promotion.auto_promote`
  over the archive since it went live, against the champion, promoting it when it wins
  at 1% significance on at least ``min_labels`` paired labelled requests (the deployment
  record's reason states the evidence). (If no alert has come by ``retrain_by_s``, it
  retrains on schedule and says so.)

Every step of the story is a :class:`Milestone`, handed to ``on_milestone`` as it
happens (from these threads). :meth:`Story.quality` joins the answers the clients got
with the labels, phase by phase. Thread-safety: the fleet is touched under one lock.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from modelstream.archive.reader import ArchiveReader
from modelstream.backplane.records import OutRecord, now_ms
from modelstream.demo.fleet import Fleet
from modelstream.demo.scenario import DemoModels, event_record
from modelstream.demo.traffic import Answer
from modelstream.errors import ModelstreamError
from modelstream.gateway.serving import Serving
from modelstream.models.refs import ModelRef
from modelstream.monitoring.alerts import Alert
from modelstream.rendezvous.promotion import auto_promote
from modelstream.wire.labels import Label
from modelstream.wire.requests import new_request_id
from modelstream.wire.topics import ServiceTopics

log = logging.getLogger(__name__)

SERVED, DRIFTED, ALERTED, RETRAINED, PROMOTED = (
    "served",
    "drifted",
    "alerted",
    "retrained",
    "promoted",
)


@dataclass(frozen=True, slots=True)
class Milestone:
    """One step of the story, ``at_s`` seconds after the traffic started."""

    at_s: float
    kind: str
    text: str


@dataclass
class Phase:
    """Answers joined with their labels over one phase of the story."""

    name: str
    labelled: int = 0
    correct: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None


@dataclass
class Seen:
    """What the watcher has seen so far (read by the live view)."""

    quality: list[tuple[float, float]] = field(default_factory=list)  # (s, accuracy)
    alerts: list[tuple[float, Alert]] = field(default_factory=list)
    timeline: list[tuple[float, str]] = field(default_factory=list)  # (s, text)
    champion: str = ""
    labels: int = 0
    late_events: int = 0
    events: int = 0


class Story:
    """Drives the fleet and watches the loop (see the module docstring)."""

    def __init__(
        self,
        serving: Serving,
        models: DemoModels,
        fleet: Fleet,
        *,
        drift_at_s: float,
        retrain_by_s: float,
        min_labels: int,
        on_milestone: Callable[[Milestone], None],
    ) -> None:
        self.serving = serving
        self.models = models
        self.fleet = fleet
        self.topics = ServiceTopics(models.service)
        self.drift_at_s = drift_at_s
        self.retrain_by_s = retrain_by_s
        self.min_labels = min_labels
        self.verdict = ""
        self._candidate: tuple[ModelRef, datetime] | None = None
        self._next_judgement = 0.0
        self._on_milestone = on_milestone
        self.milestones: list[Milestone] = []
        self.seen = Seen(champion=str(models.champion))
        self.truth: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._t0 = time.monotonic()
        self._drifted_at_ms: int | None = None  # event time of the drift
        self._drifted_at_s: float | None = None  # and when it came (as ``elapsed()``)
        self._retrained = False
        self._next_retrain = 0.0
        self._promoted_at: float | None = None
        self._timeline_seen = 0
        self._alerts_seen: set[tuple[str, str, int]] = set()
        self._entities = fleet.entities
        self._pick = random.Random(11)
        # Labels written so far about requests at or after an event time (see _labelled).
        self._label_times: list[int] = []

    # -- the clock of the story ------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def milestone(self, kind: str, text: str) -> None:
        m = Milestone(self.elapsed(), kind, text)
        self.milestones.append(m)
        self._on_milestone(m)

    def reached(self, kind: str) -> bool:
        return any(m.kind == kind for m in self.milestones)

    @property
    def drifted_at_s(self) -> float | None:
        """When the world drifted (as ``elapsed()``), or ``None`` before it has."""
        return self._drifted_at_s

    def _due_to_drift(self) -> bool:
        return (
            self._drifted_at_ms is None
            and self.elapsed() >= self.drift_at_s
            and self.reached(SERVED)
        )

    @property
    def promoted_at_s(self) -> float | None:
        return self._promoted_at

    # -- requests --------------------------------------------------------------------------

    def ask(self) -> tuple[str, str]:
        """The next request: a fresh id about a random-ish truck, remembered for its label."""
        request_id = new_request_id()
        with self._lock:
            entity = self._pick.choice(self._entities)
            self.fleet.requested(request_id, entity, now_ms())
        return request_id, entity

    # -- threads ---------------------------------------------------------------------------

    def start(self) -> Story:
        """Start the world and the watcher; the story's clock starts now."""
        self._t0 = time.monotonic()
        for target, name in ((self._world, "demo-world"), (self._watch, "demo-watcher")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def _world(self) -> None:
        minute = self.fleet.minute_ms
        next_tick = (now_ms() // minute + 1) * minute
        while not self._stop.is_set():
            wait = (next_tick - now_ms()) / 1000
            if wait > 0 and self._stop.wait(wait):
                return
            try:
                self._tick(next_tick)
            except ModelstreamError as exc:  # a backplane hiccup: the next minute retries
                log.error("demo fleet: %s", exc)
            next_tick += minute

    def _tick(self, t: int) -> None:
        if self._due_to_drift():
            with self._lock:
                self.fleet.drift()
            self._drifted_at_ms, self._drifted_at_s = t, self.elapsed()
            self.milestone(
                DRIFTED,
                "the world drifted: failures are now preceded by rising vibration, "
                "no longer by engine temperature",
            )
        with self._lock:
            readings = self.fleet.deliver(self.fleet.tick(t), t)
            labels = self.fleet.due_labels(t)
        bp = self.serving.backplane
        bp.produce(self.topics.events, [event_record(r) for r in readings])
        self.seen.events += len(readings)
        if labels:
            records = [
                OutRecord(
                    Label(
                        self.topics.service,
                        truth.value,
                        truth.labelled_at,
                        request_id=truth.request_id,
                        entity=truth.entity,
                        event_time=truth.event_time,
                        source="maintenance log",
                    ).encode(),
                    truth.request_id.encode(),
                    (),
                    truth.labelled_at,
                )
                for truth in labels
            ]
            bp.produce(self.topics.labels, records)
            for truth in labels:
                self.truth[truth.request_id] = truth.value
                self._label_times.append(truth.event_time)
            self.seen.labels += len(labels)

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self._observe()
            except ModelstreamError as exc:
                log.error("demo watcher: %s", exc)

    def _observe(self) -> None:
        now = self.elapsed()
        if self.serving.featurizers:
            self.seen.late_events = self.serving.featurizers[0].featurizer.stats.late
        if self.serving.monitors:
            monitor = self.serving.monitors[0]
            snapshot = monitor.snapshot()
            model = snapshot.model(self.seen.champion)
            if model is not None and model.primary_value is not None:
                self.seen.quality.append((now, model.primary_value))
            for alert in monitor.alerts():
                key = (alert.kind.value, alert.model or alert.metric, alert.at)
                if key in self._alerts_seen:
                    continue
                self._alerts_seen.add(key)
                self.seen.alerts.append((now, alert))
                if self._drifted_at_ms is not None and not self.reached(ALERTED):
                    self.milestone(ALERTED, f"the monitor alerted: {alert.message}")
        self._timeline()
        self._maybe_retrain(now)
        self._promotions(now)

    def _timeline(self) -> None:
        history = self.serving.registry.history(self.topics.service)
        for deployment in history[self._timeline_seen :]:
            champion = deployment.champion
            if champion is not None:
                self.seen.champion = str(champion.ref)
            self.seen.timeline.append((self.elapsed(), deployment.reason or "(no reason)"))
        self._timeline_seen = len(history)

    def _labelled(self, since_ms: int) -> int:
        """How many labels have been written about requests made at or after ``since_ms``."""
        return sum(1 for t in self._label_times if t >= since_ms)

    def labels_pending(self) -> int:
        """Requests whose label is not known yet."""
        with self._lock:
            return self.fleet.pending_labels

    def _maybe_retrain(self, now: float) -> None:
        if self._retrained or self._drifted_at_ms is None or now < self._next_retrain:
            return
        # The schedule is planned from drift_at_s; it runs from when the world drifted
        # (later, if the drift waited for the first answer).
        scheduled = not self.reached(ALERTED)
        after_drift = self.retrain_by_s - self.drift_at_s
        drifted = self._drifted_at_s
        if scheduled and drifted is not None and now - drifted < after_drift:
            return
        if not self.serving.trainers:
            return
        trainer = self.serving.trainers[0].trainer
        # Reading the archive is the costly part of a cycle that would be skipped: wait
        # until the labels it needs have been written (the archive lags them a little).
        if self._labelled(self._drifted_at_ms) < trainer.config.min_rows:
            return
        result = trainer.run_once(start_ms=self._drifted_at_ms, end_ms=now_ms())
        if result.published is None:
            log.info("demo retrain: %s", result.reason)
            self._next_retrain = now + 2.0
            return
        self._retrained = True
        why = "on schedule (no alert yet)" if scheduled else "on the alert"
        evaluation = result.evaluation
        detail = ""
        if evaluation is not None and evaluation.champion is not None:
            detail = (
                f": holdout {evaluation.metric} {evaluation.candidate:.3f} vs the "
                f"champion's {evaluation.champion:.3f}"
            )
        self.milestone(
            RETRAINED,
            f"the trainer retrained {why} on {result.rows} labelled requests since the "
            f"drift; {result.published.ref} is live as a challenger{detail}",
        )
        self._candidate = (result.published.ref, datetime.now(UTC))

    def _promotions(self, now: float) -> None:
        if self._candidate is None or self._promoted_at is not None:
            return
        if now < self._next_judgement:
            return
        ref, since = self._candidate
        if self._labelled(int(since.timestamp() * 1000)) < self.min_labels:
            return  # not enough evidence can be in the archive yet
        self._next_judgement = now + 3.0
        verdict = auto_promote(
            self.serving.registry,
            ArchiveReader(self.serving.settings.archive_root()),
            self.topics.service,
            min_labels=self.min_labels,
            alpha=0.01,
            challenger=ref,
            start=since,
        )
        self.verdict = verdict.reason
        if verdict.deployment is not None:
            self._promoted_at = now
            self.seen.champion = str(ref)
            self.milestone(PROMOTED, f"promoted: {verdict.reason}")

    # -- the outcome -----------------------------------------------------------------------

    def quality(self, answers: dict[str, Answer]) -> list[Phase]:
        """The answers' accuracy against their labels: before the drift, after it (until
        the promotion), and after the promotion."""
        phases = [Phase("before the drift"), Phase("after the drift"), Phase("after promotion")]
        promoted = self._promoted_at
        drifted = self.drifted_at_s
        for request_id, answer in list(answers.items()):
            truth = self.truth.get(request_id)
            if truth is None or answer.label is None:
                continue
            if drifted is None or answer.sent_s < drifted:
                phase = phases[0]
            elif promoted is None or answer.sent_s < promoted:
                phase = phases[1]
            else:
                phase = phases[2]
            phase.labelled += 1
            phase.correct += int(answer.label == truth)
        return phases

    def settle(self, timeout: float) -> None:
        """Keep the world running after the last request until its labels are known and the
        retrained challenger is judged, or at most ``timeout`` seconds: the quality after
        the promotion is measured on labels that arrive after the traffic ends."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.labels_pending() == 0 and not self._verdict_can_come():
                return
            if self._stop.wait(0.25):
                return

    def _verdict_can_come(self) -> bool:
        """Whether a retrained challenger is still to be judged and can be: once the traffic
        is over, no more labelled requests accrue, so one short of ``min_labels`` never
        will be (waiting for it would only spend the timeout)."""
        if self._candidate is None or self.reached(PROMOTED):
            return False
        _, since = self._candidate
        return self._labelled(int(since.timestamp() * 1000)) >= self.min_labels
