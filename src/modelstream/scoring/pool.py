"""All the scorers of one service: one :class:`~modelstream.scoring.scorer.Scorer` per
live model name, started and stopped as the deployment adds and removes names.

Lifecycle of :class:`ScorerPool`: :meth:`ScorerPool.start` follows the service's
deployment; on every change it starts a scorer for each live name it does not run yet
(each scorer then loads its version itself) and stops the scorers of names no longer
live (a stopped scorer leaves its group; its committed offsets stay, so a name that
comes back resumes where it left off). A new *version* of a running name is the
scorer's business (a swap), not the pool's. :meth:`ScorerPool.stop` stops every scorer.
"""

from __future__ import annotations

import logging
import threading
import time

from modelstream.backplane.port import Backplane
from modelstream.models.deployment import Deployment
from modelstream.models.descriptor import ModelDescriptor
from modelstream.models.refs import ModelRef
from modelstream.scoring.loading import ModelSource
from modelstream.scoring.scorer import (
    Follower,
    FollowerFactory,
    Scorer,
    ScorerConfig,
    registry_follower,
)
from modelstream.scoring.stats import VersionStats
from modelstream.settings import Settings

log = logging.getLogger(__name__)


class ScorerPool:
    """Runs one scorer per live model name of ``service`` (see the module docstring)."""

    def __init__(
        self,
        backplane: Backplane,
        settings: Settings,
        service: str,
        *,
        config: ScorerConfig | None = None,
        source: ModelSource | None = None,
        follower_factory: FollowerFactory | None = None,
    ) -> None:
        self.backplane = backplane
        self.settings = settings
        self.service = service
        self.config = config or ScorerConfig()
        self._source = source
        self._follower_factory = follower_factory or registry_follower
        self._follower: Follower | None = None
        self._scorers: dict[str, Scorer] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopped = False

    def start(self) -> ScorerPool:
        with self._lock:
            if self._follower is not None:
                return self
            self._stopped = False
            self._follower = self._follower_factory(self.backplane, self.service, self.on_change)
        self._follower.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following and stop every scorer. Idempotent."""
        with self._lock:
            self._stopped = True
            follower, self._follower = self._follower, None
        if follower is not None:
            follower.stop()
        with self._lock:
            scorers, self._scorers = list(self._scorers.values()), {}
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
        """Start and stop scorers to match ``deployment``'s live names."""
        wanted = set() if deployment is None else {m.ref.name for m in deployment.models}
        with self._lock:
            if self._stopped:
                return
            gone = [self._scorers.pop(n) for n in list(self._scorers) if n not in wanted]
            new = [
                Scorer(
                    self.backplane,
                    self.settings,
                    self.service,
                    name,
                    config=self.config,
                    source=self._source,
                    follower_factory=self._follower_factory,
                )
                for name in sorted(wanted - self._scorers.keys())
            ]
            for scorer in new:
                self._scorers[scorer.model_name] = scorer
        for scorer in gone:
            log.info("%s: %s is no longer live; stopping its scorer", self.service, scorer.group)
            scorer.stop()
        for scorer in new:
            log.info("%s: starting a scorer for %s", self.service, scorer.model_name)
            scorer.start()
        with self._lock:
            self._changed.notify_all()

    @property
    def scorers(self) -> dict[str, Scorer]:
        """The running scorers by model name (a copy)."""
        with self._lock:
            return dict(self._scorers)

    def wait_for(self, names: set[str], timeout: float) -> bool:
        """Wait until exactly ``names`` have scorers and each serves a version."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if not self._changed.wait_for(lambda: set(self._scorers) == names, timeout):
                return False
            scorers = list(self._scorers.values())
        return all(s.wait_ready(max(0.0, deadline - time.monotonic())) for s in scorers)

    def stats(self) -> list[VersionStats]:
        """Figures per model version of every running scorer."""
        out: list[VersionStats] = []
        for scorer in self.scorers.values():
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
