"""Every role of some services in one process: gateway, rendezvous and scorers.

What ``modelstream serve`` runs (the embedded default), and what ``modelstream run
ROLE`` runs one role of (so on Kafka each role can be a process of its own). The roles
still talk only through the backplane; sharing a process only saves hops between
processes, and lets the gateway show the scorers' in-process statistics.

Lifecycle: :meth:`Serving.start` starts the rendezvous and scorer pool of each service
(pools wait for their models to load) before the gateway accepts requests;
:meth:`Serving.stop` stops the gateway first (in-flight requests are answered), then the
rendezvous (committing what it answered) and the scorers.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Sequence

from modelstream.backplane.port import Backplane
from modelstream.errors import ConfigurationError, ServiceNotFound
from modelstream.gateway.server import GatewayServer, build_gateway, default_gateway_id
from modelstream.models.registry import Registry
from modelstream.rendezvous.server import Rendezvous
from modelstream.scoring.pool import ScorerPool
from modelstream.scoring.scorer import Scorer
from modelstream.scoring.stats import VersionStats
from modelstream.settings import Settings

log = logging.getLogger(__name__)


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
    """Gateway, rendezvous and scorers of ``services`` over one backplane."""

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
    ) -> None:
        self.backplane = backplane
        self.settings = settings
        self.services = list(services)
        self.registry = Registry(backplane, settings)
        self.rendezvous = (
            [Rendezvous(backplane, settings, s) for s in self.services] if rendezvous else []
        )
        self.pools = [ScorerPool(backplane, settings, s) for s in self.services] if scorers else []
        self.server: GatewayServer | None = None
        if gateway:
            port = settings.port if port is None else port
            app, _ = build_gateway(
                backplane,
                settings,
                self.registry,
                gateway_id=default_gateway_id(port or os.getpid()),
                services=self.services,
                stats=self.stats if scorers else None,
            )
            self.server = GatewayServer(app, host or settings.host, port)

    def stats(self, service: str) -> list[VersionStats]:
        """In-process statistics of the scorers of ``service``."""
        return [s for pool in self.pools if pool.service == service for s in pool.stats()]

    def start(self, load_timeout: float = 60.0) -> None:
        """Start the stream roles, wait (bounded) for models to load, then the gateway."""
        for r in self.rendezvous:
            r.start()
        for pool in self.pools:
            pool.start()
        for pool in self.pools:
            names = {m.ref.name for m in self.registry.deployment(pool.service).models}
            if not pool.wait_for(names, load_timeout):
                log.warning("scorers of %s not all ready after %.0f s", pool.service, load_timeout)
        if self.server is not None:
            self.server.start()

    def run(self) -> None:
        """Start, serve until SIGINT/SIGTERM, then stop."""
        stop = threading.Event()
        previous = {
            sig: signal.signal(sig, lambda *_: stop.set())
            for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            self.start()
            if self.server is not None:
                log.warning("modelstream gateway on %s", self.server.url)
            stop.wait()
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop(self) -> None:
        """Stop the gateway, then the rendezvous, then the scorers (idempotent)."""
        if self.server is not None:
            self.server.stop()
        for r in self.rendezvous:
            r.stop()
        for pool in self.pools:
            pool.stop()


def run_scorer(backplane: Backplane, settings: Settings, service: str, model: str) -> None:
    """Run the scorer of one model name of ``service`` until SIGINT/SIGTERM."""
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    scorer = Scorer(backplane, settings, service, model).start()
    try:
        stop.wait()
    finally:
        scorer.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
