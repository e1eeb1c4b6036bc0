"""The monitor role: every model's quality, latency, errors, agreement and drift, live.

:class:`Monitor` is a member of the consumer group ``<service>.monitor`` over
``<service>.requests``, ``.scores``, ``.results`` and ``.labels`` (missing topics are
created with the partition count of ``.requests``, so they stay co-partitioned). It
joins labels with every model's score (:mod:`.joiner`), keeps per-model windows of event
time (:mod:`.state`), and every ``evaluate_every`` records (and whenever it is idle with
new records) evaluates them: Prometheus gauges are set (:mod:`.metrics`), alerts are
raised (:mod:`.evaluate`) onto ``<service>.alerts`` and the log, and the quality the
rendezvous's ``quality`` policy reads (:class:`~.quality.MonitorQuality`) is refreshed.

Contract:

* Undecodable records go to ``<service>.dead-letter`` with the reason; processing goes
  on. Late-answer notes on ``results`` (header ``x-modelstream-late``) are skipped.
* The monitor's state is in memory. Offsets are committed every ``commit_interval_s``
  and on :meth:`Monitor.stop`; a restarted monitor resumes after them with empty
  windows, which refill from new traffic (monitoring tolerates the gap; nothing is
  answered from this state).
* Several members share the partitions; a label keyed by entity then only joins the
  requests of its own partition's member. Run one member per service unless labels come
  by request id.
* ``standalone=True`` (the ``modelstream monitor`` command): no group, every partition,
  no commits, no dead-lettering and no alert records (alerts are still logged and
  shown): a read-only observer that does not disturb the running monitor.
* Thread-safety: :meth:`snapshot`, :meth:`quality` and :meth:`set_reference` may be
  called from any thread while the monitor runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry

from modelstream.backplane.port import Backplane, Consumer, StartFrom
from modelstream.backplane.records import Record, TopicPartition
from modelstream.clock import Clock, SystemClock
from modelstream.errors import ConfigurationError, DecodeError, ModelstreamError
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.monitoring.alerts import Alert, Alerter, Sink, topic_sink
from modelstream.monitoring.config import MonitorConfig
from modelstream.monitoring.evaluate import evaluate_alerts
from modelstream.monitoring.measures import oriented
from modelstream.monitoring.metrics import monitor_metrics
from modelstream.monitoring.references import reference_of
from modelstream.monitoring.snapshot import MonitorSnapshot
from modelstream.monitoring.state import MonitorState
from modelstream.rendezvous.outcome import LATE_HEADER
from modelstream.settings import Settings
from modelstream.threads import ended
from modelstream.wire.deadletter import send_to_dead_letter
from modelstream.wire.labels import decode_label
from modelstream.wire.requests import decode_request
from modelstream.wire.results import decode_result
from modelstream.wire.scores import decode_score
from modelstream.wire.topics import ServiceTopics

log = logging.getLogger(__name__)


class Monitor:
    """The monitor of one service (see the module for the contract)."""

    def __init__(
        self,
        backplane: Backplane,
        settings: Settings,
        service: str,
        *,
        clock: Clock | None = None,
        config: MonitorConfig | None = None,
        registry: CollectorRegistry | None = None,
        start: StartFrom = "earliest",
        standalone: bool = False,
        commit_interval_s: float = 5.0,
        poll_interval_s: float = 0.2,
    ) -> None:
        self.topics = ServiceTopics(service)
        self.config = config or MonitorConfig()
        self._bp = backplane
        self._settings = settings
        self._clock: Clock = clock or SystemClock()
        self._start = start
        self._standalone = standalone
        self._commit_interval = commit_interval_s
        self._poll = poll_interval_s
        self.metrics = monitor_metrics(registry)
        self._state = MonitorState(self.config)
        self._lock = threading.RLock()
        sink: Sink = (
            (lambda _alert: None) if standalone else topic_sink(backplane, self.topics.alerts)
        )
        self._alerter = Alerter(
            service,
            self.config.window_json(),
            self._clock,
            realert_ms=self.config.realert_ms,
            sink=self._with_metrics(sink),
            recent=self.config.recent_alerts,
        )
        self._quality: dict[str, float] = {}
        self._since_eval = 0
        self._dead = 0
        self._consumer: Consumer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_commit = time.monotonic()
        self.failure: BaseException | None = None

    @property
    def service(self) -> str:
        return self.topics.service

    def _with_metrics(self, sink: Sink) -> Sink:
        def send(alert: Alert) -> None:
            self.metrics.alert(alert.service, alert.model, alert.kind.value)
            sink(alert)

        return send

    # -- lifecycle ------------------------------------------------------------------------

    def _ensure_topics(self) -> list[str]:
        t = self.topics
        existing = {spec.name: spec.partitions for spec in self._bp.list_topics()}
        partitions = existing.get(t.requests)
        names = [t.requests, t.scores, t.results, t.labels]
        for name in names:
            if name not in existing:
                self._bp.create_topic(name, partitions)
        if not self._standalone and t.alerts not in existing:
            self._bp.create_topic(t.alerts)
        return names

    def open(self) -> Monitor:
        """Join the group (or, standalone, read every partition); no thread is started."""
        if self._consumer is not None:
            raise ConfigurationError("this monitor is already open; create a new one")
        topics = self._ensure_topics()
        group = None if self._standalone else f"{self.service}.monitor"
        self._consumer = self._bp.consumer(topics, group=group, start=self._start)
        return self

    def start(self) -> Monitor:
        """Open, then monitor on a background thread until :meth:`stop`."""
        if self._thread is not None:
            raise ConfigurationError("this monitor is already started; create a new one")
        if self._consumer is None:
            self.open()
        self._thread = threading.Thread(target=self._run, name=f"monitor-{self.service}")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread, evaluate and commit once more, leave the group (idempotent)."""
        self._stop.set()
        if not ended(self._thread, timeout, f"the monitor of {self.service}"):
            return  # a thread still running keeps what it uses (see modelstream.threads)
        self._thread = None
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                if self._since_eval:
                    self.evaluate()
                self._commit(consumer, force=True)
            finally:
                consumer.close()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.step(self._poll)
        except (ModelstreamError, OSError) as exc:  # logged, kept for the owner to see
            log.exception("monitor of %s stopped", self.service)
            self.failure = exc

    # -- the loop -------------------------------------------------------------------------

    def step(self, timeout: float = 0.2, max_records: int = 1000) -> int:
        """Poll once, take what came, evaluate when due, commit when due; return records."""
        consumer = self._consumer
        if consumer is None:
            raise ConfigurationError("open() or start() the monitor before step()")
        records = consumer.poll(max_records=max_records, timeout=timeout)
        with self._lock:
            for record in records:
                self._take(record)
            self._since_eval += len(records)
            if self._since_eval >= self.config.evaluate_every or (not records and self._since_eval):
                self.evaluate()
        self._commit(consumer)
        return len(records)

    def _take(self, record: Record) -> None:
        t, state = self.topics, self._state
        try:
            if record.topic == t.requests:
                state.on_request(decode_request(record.value))
            elif record.topic == t.scores:
                state.on_score(decode_score(record.value), record.timestamp)
            elif record.topic == t.results:
                if record.header(LATE_HEADER) is None:
                    state.on_result(decode_result(record.value), record.timestamp)
            elif record.topic == t.labels:
                state.on_label(decode_label(record.value))
        except DecodeError as exc:
            self._dead += 1
            if not self._standalone:
                send_to_dead_letter(self._bp, t.dead_letter, record, str(exc))

    def _commit(self, consumer: Consumer, *, force: bool = False) -> None:
        if self._standalone:
            return
        if not force and time.monotonic() - self._last_commit < self._commit_interval:
            return
        self._last_commit = time.monotonic()
        if consumer.assignment():
            consumer.commit()

    def catch_up(self, timeout: float = 30.0) -> bool:
        """Step on this thread until every assigned partition has been read up to its end
        as of this call, then evaluate; ``False`` if ``timeout`` passed first."""
        consumer = self._consumer
        if consumer is None:
            self.open()
            consumer = self._consumer
        assert consumer is not None
        ends: dict[TopicPartition, int] = {}
        for topic in (self.topics.requests, self.topics.scores, self.topics.results):
            ends.update(self._ends(topic))
        ends.update(self._ends(self.topics.labels))
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            self.step(0.1)
            assigned = consumer.assignment()
            if (
                assigned
                and all(consumer.position(tp) >= ends.get(tp, 0) for tp in assigned)
                and (not self._standalone or set(ends) <= assigned)
            ):
                with self._lock:
                    self.evaluate()
                return True
        return False

    def _ends(self, topic: str) -> dict[TopicPartition, int]:
        return {TopicPartition(topic, p.partition): p.end for p in self._bp.partitions(topic)}

    # -- evaluation and reading -----------------------------------------------------------

    def _lookup_references(self, refs: Sequence[str]) -> None:
        """Apply what the descriptors of newly seen model versions say (see references)."""
        if self.topics.models not in {s.name for s in self._bp.list_topics()}:
            return
        try:
            descriptors = {
                str(d.ref): d for d in Registry(self._bp, self._settings).descriptors(self.service)
            }
        except ModelstreamError:
            log.warning(
                "could not read descriptors of %s; references from the first window", self.service
            )
            return
        for ref in refs:
            descriptor = descriptors.get(ref)
            tracker = self._state.models.get(ref)
            if descriptor is None or tracker is None:
                continue
            found = reference_of(descriptor)
            tracker.lineage_metrics.update(found.metrics)
            if found.scores:
                tracker.scores.reference.set(found.scores, source=f"descriptor:{ref}")
            for name, values in found.inputs.items():
                series = self._state.series(name)
                if series is not None and not series.reference.fixed:
                    series.reference.set(values, source=f"descriptor:{ref}")

    def evaluate(self) -> MonitorSnapshot:
        """Measure the windows now: set gauges, raise alerts, refresh quality; the snapshot."""
        with self._lock:
            state = self._state
            if state.new_models:
                new, state.new_models = state.new_models, []
                self._lookup_references(new)
            state.trim()
            self._since_eval = 0
            snap = self._snapshot()
            drifts, state.error_drifts = state.error_drifts, []
            evaluate_alerts(self._alerter, self.config, snap, drifts)
            self.metrics.update(snap)
            self._quality = {
                m.model: oriented(m.primary, value)
                for m in snap.models
                if m.primary is not None and (value := m.primary_value) is not None
            }
            return snap

    def _snapshot(self) -> MonitorSnapshot:
        state = self._state
        _, results, misses = state.results()
        records = dict(state.records)
        records["dead_lettered"] = self._dead
        return MonitorSnapshot(
            service=self.service,
            at=self._clock.now_ms(),
            watermark=state.joiner.watermark,
            window=self.config.window_json(),
            records=records,
            pending=len(state.joiner),
            unmatched_labels=state.joiner.unmatched_labels,
            results=results,
            deadline_misses=misses,
            models=state.model_snapshots(),
            agreement=state.agreement(),
            input_drift=state.input_drift(),
            alerts=tuple(a.to_json() for a in self._alerter.recent),
        )

    def snapshot(self) -> MonitorSnapshot:
        """What the monitor knows now, measured afresh (no alerts raised, no gauges set)."""
        with self._lock:
            return self._snapshot()

    def quality(self, ref: ModelRef | str) -> float | None:
        """The last evaluated quality of ``ref`` (higher is better), or ``None``."""
        return self._quality.get(str(ref))

    def alerts(self) -> list[Alert]:
        """The most recent alerts (at most ``config.recent_alerts``), oldest first."""
        with self._lock:
            return list(self._alerter.recent)

    def set_reference(self, feature: str, values: Iterable[float]) -> None:
        """Use ``values`` as the reference of input ``feature`` (e.g. ``x[0]``)."""
        with self._lock:
            series = self._state.series(feature)
            if series is None:
                raise ConfigurationError(
                    f"the monitor already tracks {self.config.max_features} features; "
                    "raise MonitorConfig.max_features to add a reference for another"
                )
            series.reference.set([float(v) for v in values], source="api")

    def set_score_reference(self, ref: ModelRef | str, values: Iterable[float]) -> None:
        """Use ``values`` as the reference of model ``ref``'s score distribution."""
        with self._lock:
            tracker = self._state.tracker(str(ref), "champion")
            tracker.scores.reference.set([float(v) for v in values], source="api")
