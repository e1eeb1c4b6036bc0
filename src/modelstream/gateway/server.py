"""Run the gateway: build it from settings, serve it under uvicorn, shut it down cleanly.

* :func:`build_gateway` — the app and its data plane over an open backplane and registry.
* :class:`GatewayServer` — uvicorn serving an app on a socket it binds itself (so port
  0 works and the real port is known before serving), in the foreground
  (:meth:`GatewayServer.run`, which handles SIGINT/SIGTERM) or on a background thread
  (:meth:`GatewayServer.start` / :meth:`GatewayServer.stop`, for tests and for
  ``modelstream serve`` next to other roles).
* :func:`serve_gateway` — the ``modelstream run gateway`` entry point.

Shutdown order: uvicorn stops accepting and finishes in-flight requests, then the app's
lifespan stops the data plane (producer drained, reply listeners stopped, consumers
closed); the caller closes the backplane last.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Iterable

import uvicorn
from starlette.applications import Starlette

from modelstream.backplane.port import Backplane
from modelstream.errors import ConfigurationError
from modelstream.gateway.app import build_app
from modelstream.gateway.dataplane import DataPlane
from modelstream.gateway.metrics import GatewayMetrics
from modelstream.gateway.ports import RegistryPort
from modelstream.gateway.stats import StatsSource
from modelstream.settings import Settings


def default_gateway_id(port: int) -> str:
    """A gateway id stable across restarts of the same host and port.

    Stable so a restarted gateway reuses its reply topic instead of leaving one behind
    per incarnation; its listener starts at the topic's end, so stale replies are skipped.
    """
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:40].strip("-") or "gw"
    return f"{host}-{port}" if host[0].isalnum() else f"gw-{host}-{port}"


def build_gateway(
    backplane: Backplane,
    settings: Settings,
    registry: RegistryPort,
    *,
    gateway_id: str,
    services: Iterable[str] = (),
    stats: StatsSource | None = None,
    metrics: GatewayMetrics | None = None,
) -> tuple[Starlette, DataPlane]:
    """The gateway app and its data plane (started by the app's lifespan)."""
    plane = DataPlane(backplane, settings, registry, gateway_id, metrics=metrics)
    return build_app(plane, services=services, stats=stats), plane


class GatewayServer:
    """uvicorn serving ``app`` on ``host:port`` (port 0: any free port)."""

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections
        # only for sockets that say they are TCP; without it every keep-alive response
        # waits ~40 ms for the client's delayed ACK (Nagle).
        self._socket = socket.socket(
            socket.AF_INET6 if ":" in host else socket.AF_INET,
            socket.SOCK_STREAM,
            socket.IPPROTO_TCP,
        )
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
        except OSError as exc:
            self._socket.close()
            raise ConfigurationError(
                f"cannot listen on {host}:{port} ({exc}); choose another --port"
            ) from None
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
            # Speed: no X-Forwarded-* rewriting on every request (a proxy in front can
            # still pass the client's address in headers the app does not need), and
            # uvicorn's fastest parser and loop when installed (httptools, uvloop).
            proxy_headers=False,
            http="auto",
            loop="auto",
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def run(self) -> None:
        """Serve in the foreground until SIGINT/SIGTERM (or :meth:`stop`)."""
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._socket.close()

    def start(self, timeout: float = 15.0) -> None:
        """Serve on a background thread; return once it accepts connections."""
        self._thread = threading.Thread(target=self.run, name="gateway-http", daemon=True)
        self._thread.start()
        waited = 0.0
        while not self._server.started:
            if not self._thread.is_alive() or waited > timeout:
                self.stop()
                raise ConfigurationError(
                    f"the gateway did not start on {self.url} within {timeout} s; see its log"
                )
            threading.Event().wait(0.02)
            waited += 0.02

    def stop(self) -> None:
        """Stop serving (in-flight requests finish) and join the thread."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def serve_gateway(
    settings: Settings,
    services: Iterable[str] = (),
    host: str | None = None,
    port: int | None = None,
    *,
    gateway_id: str | None = None,
) -> None:
    """Run the gateway role alone, in the foreground, on ``settings.backplane``."""
    from modelstream.backplane.factory import open_backplane
    from modelstream.models.registry import Registry

    host = host or settings.host
    port = settings.port if port is None else port
    backplane = open_backplane(settings.backplane, settings)
    try:
        registry = Registry(backplane, settings)
        app, _ = build_gateway(
            backplane,
            settings,
            registry,
            gateway_id=gateway_id or default_gateway_id(port or os.getpid()),
            services=services,
        )
        GatewayServer(app, host, port).run()
    finally:
        backplane.close()
