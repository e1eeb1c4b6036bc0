"""All the scorers of one service: one :class:`~modelstream.scoring.scorer.Scorer` per
*lane* (see :mod:`modelstream.models.deployment`), started and stopped as the deployment
adds and removes lanes.

Lifecycle of :class:`ScorerPool`: :meth:`ScorerPool.start` follows the service's
deployment; on every change it starts a scorer for each lane it does not run yet (each
scorer then loads its version itself) and stops the scorers of lanes no longer live (a
stopped scorer leaves its group; its committed offsets stay, so a lane that comes back
resumes where it left off). A new *version* in a running lane is the scorer's business
(a swap), not the pool's. :meth:`ScorerPool.stop` stops every scorer.

Two rules keep a change of lanes from skipping a request:

* **Seeding.** Before a new ``name@version`` lane starts, if its group has no committed
  offsets, the pool commits for it the offsets lane ``name``'s group has committed (read
  with ``group_offsets``). So the champion demoted by a promotion —
  scored in lane ``name`` until now — resumes in its own lane where it was.
* **Draining.** When a lane disappears while its version stays live in another lane (a
  challenger ``gbm@4`` promoted into lane ``gbm``), its scorer keeps scoring until the
  new lane serves that version *and* has committed a batch scored with it, and the old
  lane's group has caught up with the new lane's committed offsets (or ``drain_timeout_s``
  passed). Until then a request may be scored by both (the rendezvous keeps the first
  score per version), never by neither.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from modelstream.backplane.port import Backplane
from modelstream.backplane.records import TopicPartition
from modelstream.errors import ModelstreamError, TopicNotFound
from modelstream.logs import log_recovered
from modelstream.models.deployment import Deployment, lane_name
from modelstream.models.descriptor import ModelDescriptor
from modelstream.models.refs import ModelRef
from modelstream.scoring.config import (
    Follower,
    FollowerFactory,
    ScorerConfig,
    registry_follower,
    scorer_group,
)
from modelstream.scoring.events import ScorerObserver
from modelstream.scoring.loading import ModelSource
from modelstream.scoring.scorer import Scorer
from modelstream.scoring.stats import VersionStats
from modelstream.settings import Settings
from modelstream.wire.topics import ServiceTopics

log = logging.getLogger(__name__)


def seed_lane(backplane: Backplane, service: str, lane: str) -> dict[int, int]:
    """Give a new ``name@version`` lane the committed offsets of lane ``name``.

    Does nothing (returns ``{}``) for a bare-name lane, when the lane's group already has
    committed offsets, or when lane ``name``'s group has none. Returns what it committed
    (partition -> next offset).
    """
    if lane == lane_name(lane):
        return {}
    topic = ServiceTopics(service).requests
    group, base = scorer_group(service, lane), scorer_group(service, lane_name(lane))
    try:
        if backplane.group_offsets(group, topic):
            return {}
        source = backplane.group_offsets(base, topic)
    except TopicNotFound:
        return {}  # no request yet: every lane starts at the beginning
    if not source:
        return {}
    # From outside the group: on Kafka a consumer cannot commit before it has joined.
    backplane.set_group_offsets(group, {TopicPartition(topic, p): o for p, o in source.items()})
    log.info("%s: lane %s starts at the offsets of lane %s", service, lane, lane_name(lane))
    return source


@dataclass
class _Draining:
    scorer: Scorer
    ref: ModelRef  # the version it serves, now live in lane ``into``
    into: str
    since: float
    target: dict[int, int] | None = None  # lane ``into``'s offsets once it scored ``ref``


class ScorerPool:
    """Runs one scorer per lane of ``service`` (see the module docstring)."""

    def __init__(
        self,
        backplane: Backplane,
        settings: Settings,
        service: str,
        *,
        config: ScorerConfig | None = None,
        source: ModelSource | None = None,
        follower_factory: FollowerFactory | None = None,
        drain_timeout_s: float = 60.0,
        observer: ScorerObserver | None = None,
    ) -> None:
        self.backplane = backplane
        self.settings = settings
        self.service = service
        self.config = config or ScorerConfig.from_settings(settings)
        self.drain_timeout_s = drain_timeout_s
        self._source = source
        self._follower_factory = follower_factory or registry_follower
        self._observer = observer  # handed to every scorer (batch sizes, swaps)
        self._follower: Follower | None = None
        self._scorers: dict[str, Scorer] = {}
        self._draining: dict[str, _Draining] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopped = False
        self._wake = threading.Event()
        self._drainer: threading.Thread | None = None

    def start(self) -> ScorerPool:
        with self._lock:
            if self._follower is not None:
                return self
            self._stopped = False
            self._wake.clear()
            self._follower = self._follower_factory(self.backplane, self.service, self.on_change)
            self._drainer = threading.Thread(
                target=self._drain_loop, name=f"scorer-pool-{self.service}", daemon=True
            )
            self._drainer.start()
        self._follower.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following and stop every scorer. Idempotent."""
        with self._lock:
            self._stopped = True
            follower, self._follower = self._follower, None
            drainer, self._drainer = self._drainer, None
        self._wake.set()
        if follower is not None:
            follower.stop()
        if drainer is not None:
            drainer.join(timeout)
        with self._lock:
            scorers = list(self._scorers.values()) + [d.scorer for d in self._draining.values()]
            self._scorers, self._draining = {}, {}
            self._changed.notify_all()
        for scorer in scorers:
            scorer.stop(timeout)

    def __enter__(self) -> ScorerPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def on_change(
        self, deployment: Deployment | None, descriptors: dict[ModelRef, ModelDescriptor]
    ) -> None:
        """Start and stop scorers to match ``deployment``'s lanes."""
        lanes = {} if deployment is None else deployment.lanes()
        with self._lock:
            if self._stopped:
                return
            gone: list[Scorer] = []
            for lane in [n for n in self._scorers if n not in lanes]:
                scorer = self._scorers.pop(lane)
                serving = scorer.serving
                into = (
                    None if deployment is None or serving is None else deployment.lane_of(serving)
                )
                if into is not None and serving is not None:
                    self._draining[lane] = _Draining(scorer, serving, into, time.monotonic())
                else:
                    gone.append(scorer)
            # A lane that comes back while draining keeps its running scorer; one whose
            # version is no longer live anywhere stops.
            for lane in list(self._draining):
                d = self._draining[lane]
                into = None if deployment is None else deployment.lane_of(d.ref)
                if lane in lanes:
                    self._scorers[lane] = self._draining.pop(lane).scorer
                elif into is None:
                    gone.append(self._draining.pop(lane).scorer)
                elif into != d.into:
                    d.into, d.target = into, None
            starting = sorted(lanes.keys() - self._scorers.keys())
        for scorer in gone:
            log.info("%s: %s is no longer live; stopping its scorer", self.service, scorer.group)
            scorer.stop()
        new: list[Scorer] = []
        for lane in starting:
            try:
                seed_lane(self.backplane, self.service, lane)
            except Exception as exc:  # the lane starts at config.start: duplicates, no skip
                log_recovered(
                    log, exc, "%s: could not seed the offsets of lane %s", self.service, lane
                )
            new.append(
                Scorer(
                    self.backplane,
                    self.settings,
                    self.service,
                    lane,
                    config=self.config,
                    source=self._source,
                    follower_factory=self._follower_factory,
                    observer=self._observer,
                    # As the rendezvous does, when the scorer is the first to create them.
                    partitions=None if deployment is None else deployment.partitions,
                )
            )
        with self._lock:
            if self._stopped:
                return
            for scorer in new:
                self._scorers[scorer.lane] = scorer
        for scorer in new:
            log.info("%s: starting a scorer for lane %s", self.service, scorer.lane)
            try:
                scorer.start()
            except ModelstreamError as exc:
                # Only the operator can fix this (e.g. topics of different partition
                # counts): one line says what; the next registry change tries the lane again.
                log.error("%s: lane %s cannot start: %s", self.service, scorer.lane, exc)
                with self._lock:
                    if self._scorers.get(scorer.lane) is scorer:
                        del self._scorers[scorer.lane]
        with self._lock:
            self._changed.notify_all()
        self._wake.set()

    # -- draining ---------------------------------------------------------------------

    def _drain_loop(self) -> None:
        while not self._stopped:
            self._wake.wait(0.1)
            self._wake.clear()
            if self._stopped:
                return
            try:
                self._check_drains()
            except Exception as exc:  # a failed check is retried on the next round
                log_recovered(log, exc, "%s: checking draining scorers failed", self.service)

    def _check_drains(self) -> None:
        with self._lock:
            draining = dict(self._draining)
            scorers = dict(self._scorers)
        if not draining:
            return
        topic = ServiceTopics(self.service).requests
        # The groups _drained compares: each draining scorer's and its new lane's.
        wanted = {d.scorer.group for d in draining.values()}
        wanted |= {scorers[d.into].group for d in draining.values() if d.into in scorers}
        groups = {g: self.backplane.group_offsets(g, topic) for g in wanted}
        for lane, d in draining.items():
            if not self._drained(d, scorers.get(d.into), groups):
                continue
            with self._lock:
                if self._draining.get(lane) is not d:
                    continue
                del self._draining[lane]
            log.info(
                "%s: %s now scored in lane %s; stopping lane %s", self.service, d.ref, d.into, lane
            )
            d.scorer.stop()

    def _drained(
        self, d: _Draining, into: Scorer | None, groups: dict[str, dict[int, int]]
    ) -> bool:
        if time.monotonic() - d.since > self.drain_timeout_s:
            log.warning("%s: lane of %s drained by timeout", self.service, d.ref)
            return True
        if d.target is None:
            if into is None or into.serving != d.ref:
                return False
            if not any(s.ref == d.ref for s in into.stats()):
                return False  # stats are recorded after the commit of a batch with d.ref
            # Every request past these offsets is scored by d.ref in lane ``into``.
            d.target = dict(groups.get(into.group, {}))
        mine = groups.get(d.scorer.group, {})
        return all(mine.get(p, -1) >= offset for p, offset in d.target.items())

    # -- views ------------------------------------------------------------------------

    @property
    def scorers(self) -> dict[str, Scorer]:
        """The running scorers by lane (a copy; draining scorers are not included)."""
        with self._lock:
            return dict(self._scorers)

    @property
    def draining(self) -> dict[str, Scorer]:
        """Scorers of lanes that are gone but still scoring until their version moved."""
        with self._lock:
            return {lane: d.scorer for lane, d in self._draining.items()}

    def wait_for(self, lanes: set[str], timeout: float) -> bool:
        """Wait until exactly ``lanes`` have scorers and each serves a version."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if not self._changed.wait_for(lambda: set(self._scorers) == lanes, timeout):
                return False
            scorers = list(self._scorers.values())
        return all(s.wait_ready(max(0.0, deadline - time.monotonic())) for s in scorers)

    def wait_until_assigned(self, timeout: float) -> bool:
        """Wait until every running scorer reads at least one partition (see
        :meth:`Scorer.wait_until_assigned`)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            scorers = list(self._scorers.values())
        return all(s.wait_until_assigned(max(0.0, deadline - time.monotonic())) for s in scorers)

    def stats(self) -> list[VersionStats]:
        """Figures per model version of every running (and draining) scorer."""
        with self._lock:
            scorers = list(self._scorers.values()) + [d.scorer for d in self._draining.values()]
        out: list[VersionStats] = []
        for scorer in scorers:
            out.extend(scorer.stats())
        return sorted(out, key=lambda s: s.ref)


def run_scorers(
    backplane: Backplane,
    settings: Settings,
    service: str,
    *,
    config: ScorerConfig | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run the scorers of ``service`` until ``stop`` is set (or the process is interrupted)."""
    stop = stop or threading.Event()
    pool = ScorerPool(backplane, settings, service, config=config).start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        pool.stop()
