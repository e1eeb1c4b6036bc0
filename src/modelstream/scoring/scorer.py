"""The scorer role for one *lane* of a service: one live model version (see
:mod:`modelstream.models.deployment` for lanes: lane ``name`` serves the name's best-role
version and swaps in place when that changes; lane ``name@version`` serves that version).

Lifecycle:

* :meth:`Scorer.start` starts following the registry (the ``models`` and
  ``deployment`` topics) and a scoring thread. Until a version of the model is loaded
  the scorer does not join its consumer group, so nothing is read without a model.
* **Following.** On every registry change the scorer looks up its lane in the
  deployment (``Deployment.lanes()[lane]``). A new version is fetched, verified
  (sha256, signature where required), loaded, validated against its descriptor's
  schema and warmed on a sample input (:func:`~modelstream.scoring.loading.prepare`)
  *on the follower's thread*, while the
  old version keeps serving; then it is swapped in between two batches
  (:class:`~modelstream.scoring.slot.ModelSlot`) and a ``swapped`` event with timings is
  written to ``<service>.model-events``. A failed load keeps the old version and writes
  a ``load_failed`` event (once per descriptor digest: it is not retried until a new
  descriptor is published). A deployed version whose descriptor has not been read yet
  gets a ``waiting`` event and loads when the descriptor arrives. A role change of the
  same version needs no reload (``role_changed``).
* **Scoring.** One consumer group per lane, ``<service>.scorer.<lane>``, on
  ``<service>.requests``. Records are micro-batched (:mod:`modelstream.scoring.batcher`):
  by default a scorer scores what one poll brings at once (``Settings.batch_wait_ms``
  is 0), so a lone request waits for nothing and, under load, a batch is what queued
  while the previous one ran. Batches are
  run with a per-call timeout (:mod:`modelstream.scoring.runner`), and every request
  the model answers gets one record on ``<service>.scores`` (key = request id, in the
  partition number of the request's record) naming
  the version that computed it, and the header ``x-modelstream-scorer`` naming the scorer
  instance (``host-pid-suffix``: which process of the group owned the partition).
  Offsets are committed only after the scores (and any dead letters) are durable, at
  most every ``Settings.commit_interval_ms`` while records flow, at once when a poll
  brings nothing, and on stop (:class:`~modelstream.backplane.cadence.CommitCadence`):
  delivery is at-least-once, and on any failure the consumer is reopened at the
  committed offsets. Each model call (size, time) and each swap is also reported to
  the ``observer`` (:class:`~modelstream.scoring.events.ScorerObserver`), if any.
* :meth:`Scorer.stop` stops following, finishes the batch in hand, closes the
  consumer (leaving the group) and the loaded models. Idempotent.

What a request gets:

* an undecodable record: a copy on ``<service>.dead-letter`` with the reason, no score;
* ``target`` naming another model, or a version (or the bare name) that another lane of
  this name serves: nothing from this scorer; naming this model at a version that is
  not live at all: an error score saying which version serves;
* a deadline already passed when the scorer picks it up: by default
  (``ScorerConfig.expired == "error"``) an error score ``expired: ...`` without running
  the model, so a backlog (after an outage) drains fast and the rendezvous and monitor
  still see an answer for every request; ``"score"`` scores it anyway;
* inputs that do not fit the schema, a model that raises or exceeds its timeout: an
  error score (the scorer carries on);
* otherwise the model's outputs for its rows.
"""

from __future__ import annotations

import logging
import threading

from modelstream.backplane.cadence import CommitCadence
from modelstream.backplane.port import Backplane, Consumer
from modelstream.backplane.records import TopicPartition
from modelstream.backplane.retry import Backoff
from modelstream.errors import ModelError, ModelNotFound
from modelstream.logs import log_recovered
from modelstream.models.deployment import Deployment, lane_name
from modelstream.models.descriptor import ModelDescriptor
from modelstream.models.refs import ModelRef
from modelstream.scoring import events
from modelstream.scoring.batcher import collect
from modelstream.scoring.config import (
    SCORER_HEADER,
    Follower,
    FollowerFactory,
    ScorerConfig,
    check_lane,
    registry_follower,
    scorer_group,
    scorer_id,
)
from modelstream.scoring.loading import ModelSource, close_quietly, prepare, registry_source
from modelstream.scoring.process import score_records
from modelstream.scoring.runner import ModelRunner
from modelstream.scoring.slot import ModelSlot
from modelstream.scoring.stats import StatsBook, VersionStats
from modelstream.settings import Settings
from modelstream.wire.copartition import ensure_copartitioned
from modelstream.wire.topics import ServiceTopics

log = logging.getLogger(__name__)


class Scorer:
    """Scores every request of ``service`` with the live version of ``lane``.

    ``lane`` is a model name (the name's best-role version, swapped in place) or a
    ``name@version`` (that version while it is live outside lane ``name``).
    ``partitions`` is the count the request path's topics are created with when
    ``requests`` does not exist yet: the deployment's, else ``default_partitions``.
    """

    def __init__(
        self,
        backplane: Backplane,
        settings: Settings,
        service: str,
        lane: str,
        *,
        config: ScorerConfig | None = None,
        source: ModelSource | None = None,
        follower_factory: FollowerFactory | None = None,
        observer: events.ScorerObserver | None = None,
        partitions: int | None = None,
    ) -> None:
        self.backplane = backplane
        self.settings = settings
        self.topics = ServiceTopics(service)
        self.service = service
        self.lane = check_lane(lane)
        self.model_name = lane_name(self.lane)
        self.config = config or ScorerConfig.from_settings(settings)
        self.group = scorer_group(service, self.lane)
        self.id = scorer_id()
        self._headers = ((SCORER_HEADER, self.id.encode()),)
        self._source = source
        self._follower_factory = follower_factory or registry_follower
        self._follower: Follower | None = None
        self._observer = observer or events.NO_OBSERVER
        self._partitions = partitions or settings.default_partitions
        self._slot = ModelSlot(self.model_name)
        self._runner = ModelRunner(self.config.timeout_ms / 1000, name=self.lane)
        self._others: frozenset[str] = frozenset()  # targets other lanes answer
        self._stats = StatsBook()
        self._failed: dict[ModelRef, str] = {}  # ref -> sha256 that failed to load
        self._missing: set[ModelRef] = set()
        self._stop = threading.Event()
        self._assigned = threading.Event()
        self._cadence = CommitCadence(settings.commit_interval_ms)
        self._pending: dict[TopicPartition, int] = {}  # durable, not committed yet
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.scored = 0  # requests answered (with outputs or an error)
        self.loop_errors = 0  # failures of the loop itself (backplane), each retried

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> Scorer:
        """Begin following the registry and scoring; returns ``self``."""
        with self._lock:
            if self._thread is not None:
                return self
            # A score goes to its request's partition number (score_records).
            ensure_copartitioned(self.backplane, self.topics, self._partitions)
            self._thread = threading.Thread(
                target=self._loop, name=f"scorer-{self.service}-{self.lane}", daemon=True
            )
            self._thread.start()
            self._follower = self._follower_factory(self.backplane, self.service, self.on_change)
            self._follower.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following and scoring, leave the group, close the models. Idempotent."""
        with self._lock:
            follower, self._follower = self._follower, None
            thread, self._thread = self._thread, None
        self._stop.set()
        if follower is not None:
            follower.stop()
        if thread is not None:
            thread.join(timeout)
        # Close the models first: that cuts short a call still hung in a model that
        # supports it, so the runner's workers can then be joined quickly.
        for model in self._slot.clear():
            close_quietly(model)
        self._runner.close(wait_s=min(timeout, 5.0))

    def __enter__(self) -> Scorer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def serving(self) -> ModelRef | None:
        """The version serving now, or ``None`` before the first successful load."""
        active = self._slot.current()
        return None if active is None else active.ref

    def wait_ready(self, timeout: float) -> bool:
        """Wait until a version serves; whether one does within ``timeout`` seconds."""
        return self._slot.wait_ready(timeout)

    def wait_until_assigned(self, timeout: float) -> bool:
        """Wait until this scorer's consumer reads at least one partition (on Kafka, a
        group join takes seconds); whether it does within ``timeout`` seconds. A member
        beyond the partition count never does: it is a standby."""
        return self._assigned.wait(timeout)

    def stats(self) -> list[VersionStats]:
        """Figures per model version answered by this scorer since it started."""
        return self._stats.snapshot()

    # -- following the registry -----------------------------------------------------

    def on_change(
        self, deployment: Deployment | None, descriptors: dict[ModelRef, ModelDescriptor]
    ) -> None:
        """React to a registry change (called by the follower's thread, one at a time)."""
        if deployment is None or self._stop.is_set():
            return
        lanes = deployment.lanes()
        live = lanes.get(self.lane)
        if live is None:
            return  # taken out of the deployment: the pool stops this scorer
        self._others = frozenset(
            str(m.ref)
            for lane, m in lanes.items()
            if lane != self.lane and m.ref.name == live.ref.name
        ) | (frozenset({self.model_name}) if self.lane != self.model_name else frozenset())
        active = self._slot.current()
        if active is not None and active.ref == live.ref:
            if active.role != live.role.value:
                self._slot.set_role(live.role.value)
                self._emit(events.ROLE_CHANGED, live.ref, role=live.role.value)
            return
        descriptor = descriptors.get(live.ref)
        if descriptor is None:
            if live.ref not in self._missing:  # report once; it may still be on its way
                self._missing.add(live.ref)
                exc = ModelNotFound(
                    f"{live.ref} is deployed but its descriptor has not been read; publish it "
                    f"with `modelstream models publish ... --name {live.ref.name}`"
                )
                log.info("%s: waiting for the descriptor of %s", self.group, live.ref)
                self._emit(events.WAITING, live.ref, role=live.role.value, error=exc)
            return
        if self._failed.get(live.ref) == descriptor.sha256:
            return
        source = self._source or registry_source(self.settings)
        try:
            new, timings = prepare(
                descriptor, deployment, live.role.value, source, self.config.warm_timeout_ms / 1000
            )
        except ModelError as exc:
            self._failed[live.ref] = descriptor.sha256
            self._emit_failure(live.ref, live.role.value, exc)
            return
        old = self._slot.swap(new)
        log.info("%s: %s now serving (was %s)", self.group, new.ref, old and old.ref)
        self._emit(
            events.SWAPPED,
            new.ref,
            role=new.role,
            previous=None if old is None else old.ref.version,
            timings=timings,
        )
        try:
            self._observer.model_swapped(self.service, self.model_name)
        except Exception:  # metrics must never stop a swap
            log.exception("%s: the observer failed on a swap", self.group)

    def _emit_failure(self, ref: ModelRef, role: str, exc: Exception) -> None:
        serving = self.serving
        log.warning("%s: %s refused, %s keeps serving: %s", self.group, ref, serving, exc)
        self._emit(events.LOAD_FAILED, ref, role=role, error=exc)

    def _emit(
        self,
        kind: str,
        ref: ModelRef,
        *,
        role: str | None = None,
        previous: int | None = None,
        timings: dict[str, float] | None = None,
        error: Exception | None = None,
    ) -> None:
        serving = self.serving
        events.emit(
            self.backplane,
            self.service,
            kind,
            ref,
            scorer=self.id,
            serving=None if serving is None else serving.version,
            role=role,
            previous=previous,
            timings=timings,
            error=error,
        )

    # -- scoring --------------------------------------------------------------------

    def _loop(self) -> None:
        consumer: Consumer | None = None
        cfg = self.config
        backoff = Backoff(cfg.retry_max_s)
        try:
            while not self._stop.is_set():
                if self._slot.current() is None:
                    self._slot.wait_ready(cfg.poll_timeout_s)
                    continue
                try:
                    if consumer is None:
                        consumer = self.backplane.consumer(
                            [self.topics.requests], group=self.group, start=cfg.start
                        )
                    self._step(consumer)
                except Exception as exc:
                    # Reopening resumes at the committed offsets: nothing scored-but-
                    # uncommitted is lost, at worst it is scored again.
                    self.loop_errors += 1
                    wait = backoff.failed()
                    log_recovered(
                        log,
                        exc,
                        "%s: scoring failed, resuming from committed offsets in %.1f s",
                        self.group,
                        wait,
                    )
                    self._pending.clear()
                    close_quietly(consumer)
                    consumer = None
                    self._stop.wait(wait)
                else:
                    backoff.succeeded()
        finally:
            if consumer is not None:
                try:
                    self._commit(consumer)
                except Exception:  # the next owner re-scores from the last commit
                    log.warning("%s: the final commit failed", self.group, exc_info=True)
            close_quietly(consumer)

    def _step(self, consumer: Consumer) -> None:
        cfg = self.config
        records = collect(consumer.poll, cfg.max_batch, cfg.max_wait_ms, cfg.poll_timeout_s)
        if not self._assigned.is_set() and consumer.assignment():
            self._assigned.set()
        busy = self._runner.busy_models
        for model in self._slot.take_retired():
            if any(model is b for b in busy):
                continue  # still inside a timed-out call; dropping it is all we can do
            close_quietly(model)
        if not records:
            if self._pending:
                self._commit(consumer)
            return
        active = self._slot.current()  # read once: the whole batch uses this version
        assert active is not None
        outcome = score_records(
            records,
            active,
            self._runner,
            self.topics,
            cfg.expired,
            others=self._others,
            headers=self._headers,
            limit=self.backplane.max_record_bytes,
        )
        if outcome.dead_letters:
            self.backplane.produce(self.topics.dead_letter, outcome.dead_letters)
        if outcome.scores:
            self.backplane.produce(self.topics.scores, [s.out for s in outcome.scores])
        self._pending.update(outcome.offsets)
        if self._cadence.due(idle=False):
            self._commit(consumer)
        self.scored += len(outcome.scores)
        self._stats.record_scores(s.score for s in outcome.scores)
        try:
            for size, ms in outcome.batches:
                self._observer.scorer_batch(self.service, self.model_name, size, ms / 1000)
        except Exception:  # after the commit: a failing observer must not rescore
            log.exception("%s: the observer failed on a batch", self.group)

    def _commit(self, consumer: Consumer) -> None:
        """Commit the pending offsets of the partitions this consumer still owns (those of
        a partition taken away are dropped: its new owner re-scores from the last commit,
        and a commit for it would be refused on Kafka)."""
        if not self._pending:
            return
        owned = consumer.assignment()
        offsets = {tp: o for tp, o in self._pending.items() if tp in owned}
        self._pending.clear()
        if offsets:
            consumer.commit(offsets)
        self._cadence.committed()
