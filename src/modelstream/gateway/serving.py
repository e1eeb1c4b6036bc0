"""Every role of some services in one process: gateway, featurizers, rendezvous, scorers,
monitor, archiver, and optionally the trainer and automatic promotion (the loop).

What ``modelstream serve`` runs (the embedded default), and what ``modelstream run
ROLE`` runs one role of (so on Kafka each role can be a process of its own). The roles
still talk only through the backplane; sharing a process only saves hops between
processes, and lets the gateway show the scorers' in-process statistics.

Lifecycle: :meth:`Serving.start` starts the monitor and archiver of each service, the
rendezvous and scorer pool of each service (pools wait for their models to load), and
the featurizer of each service whose deployment names a feature set, then the trainers
and the promoter (:mod:`.loop`), before the gateway accepts requests;
:meth:`Serving.stop` stops the gateway first (in-flight requests are answered), then the
trainers and the promoter, the featurizers (checkpointing), the rendezvous (committing
what it answered), the scorers, the monitors, and last the archivers (flushing).

The loop's settings are one :class:`~.loop.LoopConfig` (``loop=``): archive flush
period, monitor thresholds, the training function and its triggers, auto-promotion.
The archiver writes under ``settings.archive_root()``, where the trainer and the
promoter read.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from modelstream import heap
from modelstream.backplane.port import Backplane
from modelstream.errors import ConfigurationError, ServiceNotFound
from modelstream.gateway.lifecycle import stop_on_signals
from modelstream.gateway.loop import ArchiverThread, LoopConfig, Promoter, TrainerThread
from modelstream.gateway.metrics import GatewayMetrics
from modelstream.models.deployment import Deployment
from modelstream.models.registry import Registry
from modelstream.settings import Settings

# Each role's module is imported where the role is made, not here: `modelstream run
# ROLE` then imports its own role alone, and a role restarted after a crash serves
# sooner (the rendezvous, for one, never imports onnxruntime, Starlette or the monitor).
if TYPE_CHECKING:
    from modelstream.features.role import FeaturizerRole
    from modelstream.gateway.server import GatewayServer
    from modelstream.monitoring.monitor import Monitor
    from modelstream.rendezvous.server import Rendezvous
    from modelstream.scoring.pool import ScorerPool
    from modelstream.scoring.stats import VersionStats

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 20.0  # how long start() waits for the stream roles to own partitions


def deployed_services(registry: Registry, wanted: Sequence[str] = ()) -> list[str]:
    """``wanted`` (each must have a deployment), or every service with a deployment."""
    if wanted:
        for service in wanted:
            registry.deployment(service)  # ServiceNotFound says how to deploy one
        return list(wanted)
    found = []
    for service in registry.services():
        try:
            registry.deployment(service)
        except ServiceNotFound:
            continue
        found.append(service)
    if not found:
        raise ConfigurationError(
            "no service has a deployment yet: publish a model and deploy it "
            "(`modelstream deploy --service S --champion NAME@VERSION`), or pass --service"
        )
    return found


class Serving:
    """Gateway, rendezvous, scorers, monitor, archiver (and the loop) of ``services``.

    Each role flag turns one role on or off (``modelstream run ROLE`` turns on one);
    ``trainer`` runs the trainers and the promoter that ``loop`` configures (none
    unless ``loop.train`` or ``loop.trainer`` is set, or ``loop.auto_promote``).
    """

    def __init__(
        self,
        backplane: Backplane,
        settings: Settings,
        services: Sequence[str],
        *,
        host: str | None = None,
        port: int | None = None,
        gateway: bool = True,
        rendezvous: bool = True,
        scorers: bool = True,
        monitor: bool = True,
        featurizers: bool = True,
        archiver: bool = True,
        trainer: bool = True,
        loop: LoopConfig | None = None,
    ) -> None:
        self.backplane = backplane
        self.settings = settings
        self.services = list(services)
        self.loop = loop or LoopConfig()
        self._archiver = archiver
        self.archivers: list[ArchiverThread] = []  # made in start(): they join a group
        self.registry = Registry(backplane, settings)
        # One registry for the process: the monitors' metrics appear on the gateway's /metrics.
        self.metrics = GatewayMetrics()
        self.monitors: list[Monitor] = []
        quality = None
        if monitor:
            from modelstream.monitoring.monitor import Monitor
            from modelstream.monitoring.quality import MonitorQuality

            self.monitors = [
                Monitor(
                    backplane, settings, s, registry=self.metrics.registry, config=self.loop.monitor
                )
                for s in self.services
            ]
            quality = MonitorQuality(self.monitors)
        self.rendezvous: list[Rendezvous] = []
        if rendezvous:
            from modelstream.rendezvous.server import Rendezvous

            self.rendezvous = [
                Rendezvous(backplane, settings, s, quality=quality) for s in self.services
            ]
        # The scorers report batches and swaps to the same metrics, shown on /metrics.
        self.pools: list[ScorerPool] = []
        if scorers:
            from modelstream.scoring.pool import ScorerPool

            self.pools = [
                ScorerPool(backplane, settings, s, observer=self.metrics) for s in self.services
            ]
        # One featurizer per service whose deployment names a feature set.
        self.featurizers: list[FeaturizerRole] = []
        if featurizers:
            from modelstream.features.role import featurizer_roles

            self.featurizers = featurizer_roles(backplane, settings, self._deployments())
        self.promoter = (
            Promoter(self.registry, settings.archive_root(), self.services, self.loop)
            if trainer and self.loop.promotes
            else None
        )
        trainer_config = self.loop.trainer_config() if trainer else None
        if trainer_config is not None:
            # Here, not at the top: a role that does not train never imports pandas.
            from modelstream.training.trainer import Trainer
        self.trainers = (
            [
                TrainerThread(Trainer(backplane, settings, s, trainer_config), self.promoter)
                for s in self.services
            ]
            if trainer_config is not None
            else []
        )
        self.server: GatewayServer | None = None
        if gateway:
            from modelstream.gateway.server import GatewayServer, build_gateway, default_gateway_id

            port = settings.port if port is None else port
            app, _ = build_gateway(
                backplane,
                settings,
                self.registry,
                gateway_id=default_gateway_id(port or os.getpid()),
                services=self.services,
                stats=self.stats if scorers else None,
                metrics=self.metrics,
            )
            app.state.dashboard.watch(*self.monitors)  # quality and drift on the dashboard
            self.server = GatewayServer(app, host or settings.host, port)

    def _deployments(self) -> list[Deployment]:
        """The deployments in force of the services that have one (others are skipped)."""
        found = []
        for service in self.services:
            try:
                found.append(self.registry.deployment(service))
            except ServiceNotFound:
                continue
        return found

    def stats(self, service: str) -> list[VersionStats]:
        """In-process statistics of the scorers of ``service``."""
        return [s for pool in self.pools if pool.service == service for s in pool.stats()]

    def start(self, load_timeout: float = 60.0) -> None:
        """Start the stream roles, wait (bounded) for models to load, then the gateway."""
        if self._archiver and not self.archivers:
            root = self.settings.archive_root()
            flush = self.loop.archive_flush_seconds
            self.archivers = [
                ArchiverThread(self.backplane, s, root, flush, self.settings.retry_max_s()).start()
                for s in self.services
            ]
        for m in self.monitors:
            m.start()
        for f in self.featurizers:
            f.start()
        # Side by side: each start reads its service's registry and topics (1.5-2.7 s on
        # Kafka on a loaded CI machine), so a process of several services restarts as fast
        # as a process of one. The first failure is raised, after every start has ended.
        with ThreadPoolExecutor(max(1, len(self.rendezvous)), "rendezvous-start") as starts:
            for started in [starts.submit(r.start) for r in self.rendezvous]:
                started.result()
        for pool in self.pools:
            pool.start()
        for pool in self.pools:
            lanes = set(self.registry.deployment(pool.service).lanes())
            if not pool.wait_for(lanes, load_timeout):
                log.warning("scorers of %s not all ready after %.0f s", pool.service, load_timeout)
        # Answer no request before the stream roles read their partitions (a Kafka group
        # join takes seconds): until then a request would get neither a score nor even
        # the fallback. Bounded: a member beyond the partition count is a standby.
        join_by = time.monotonic() + min(load_timeout, JOIN_TIMEOUT_S)
        joining: list[tuple[str, Rendezvous | ScorerPool]] = [
            (f"the rendezvous of {r.topics.service}", r) for r in self.rendezvous
        ]
        joining += [(f"a scorer of {p.service}", p) for p in self.pools]
        for what, role in joining:
            if not role.wait_until_assigned(max(0.0, join_by - time.monotonic())):
                log.warning("%s reads no partition yet (a standby member?)", what)
        for t in self.trainers:
            t.start()
        if self.promoter is not None:
            self.promoter.start()
        if self.server is not None:
            self.server.start()

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Start, call ``on_ready``, serve until SIGINT/SIGTERM, then stop."""
        with stop_on_signals() as stop:
            try:
                self.start()
                heap.settle()
                if on_ready is not None:
                    on_ready()
                if self.server is not None:
                    log.warning("modelstream gateway on %s", self.server.url)
                stop.wait()
            finally:
                self.stop()

    def stop(self) -> None:
        """Stop the gateway, the loop, featurizers, rendezvous, scorers, monitors, then
        the archivers (idempotent)."""
        if self.server is not None:
            self.server.stop()
        for t in self.trainers:
            t.stop()
        if self.promoter is not None:
            self.promoter.stop()
        for f in self.featurizers:
            f.stop()
        for r in self.rendezvous:
            r.stop()
        for pool in self.pools:
            pool.stop()
        for m in self.monitors:
            m.stop()
        for a in self.archivers:
            a.stop()


def run_scorer(
    backplane: Backplane,
    settings: Settings,
    service: str,
    model: str,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Run the scorer of one model name of ``service`` until SIGINT/SIGTERM (calling
    ``on_ready`` once it has started).

    A lone scorer has no HTTP server, so no ``/metrics``: its batch sizes and swaps are
    not exported (its swaps are on ``<service>.model-events``, its figures in the scores
    that ``modelstream models stats`` reads).
    """
    from modelstream.scoring.scorer import Scorer

    with stop_on_signals() as stop:
        scorer = Scorer(backplane, settings, service, model).start()
        try:
            heap.settle()
            if on_ready is not None:
                on_ready()
            stop.wait()
        finally:
            scorer.stop()
