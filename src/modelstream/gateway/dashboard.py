"""The web dashboard: the page at ``/``, its static files, and the JSON it polls.

::

    GET /                                      the page (static/index.html)
    GET /static/{name}                         its script, style and the vendored uPlot
    GET /api/v1/dashboard                      services with a deployment
    GET /api/v1/services/{service}/dashboard   everything the page shows of one service

The page is self-contained (no CDN: the chart library is vendored under ``static/``,
see ``static/NOTICE.md``) and polls the service endpoint every 1.5 s. The JSON routes
are management routes: they need the API token when one is set (the page asks for it).

Where each figure comes from (the contract of the service endpoint):

* ``series`` / ``current`` — requests/s, decision latency p50/p99, deadline misses and
  answers per model version per second, from a follower of ``<service>.results``
  (:mod:`.dashboard_feed`): every answer of the service, whichever gateway or streaming
  client sent the request. The follower runs only while someone polls.
* ``models`` — per live (or recently scored) version: scorer statistics (the in-process
  scorers' when this process runs them, else rebuilt from ``<service>.scores`` by the
  follower), the share of answers it gave, and, when a monitor of the service runs in
  this process (:meth:`Dashboard.watch`), its quality, agreement with the others and
  score drift. Without a monitor those are ``null`` and the page says "no labels yet".
* ``monitor`` — the monitor's whole snapshot (``MonitorSnapshot.to_json()``) or ``null``.
* ``timeline`` — :func:`~.dashboard_timeline.timeline` over the registry.
* ``alerts`` — the latest records of ``<service>.alerts``, newest first.
* ``late`` — how many records ``<service>.late`` holds (late events set aside by the
  featurizer).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from functools import cache
from importlib.resources import files
from typing import Any, Protocol

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelstream.backplane.records import now_ms
from modelstream.errors import ServiceNotFound
from modelstream.gateway.auth import protected
from modelstream.gateway.dashboard_feed import ServiceFeed
from modelstream.gateway.dashboard_timeline import timeline
from modelstream.gateway.dataplane import DataPlane
from modelstream.gateway.errors import guarded
from modelstream.gateway.http import json_response
from modelstream.gateway.stats import StatsSource
from modelstream.models.codec import deployment_to_json
from modelstream.wire.topics import ServiceTopics, check_name

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".md": "text/markdown; charset=utf-8",
}
# Everything the page loads comes from this origin: no CDN, works offline.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
REGISTRY_TTL_S = 3.0


class Snapshot(Protocol):
    def to_json(self) -> dict[str, Any]: ...


class SnapshotReader(Protocol):
    """What the dashboard needs of a monitor (a ``modelstream.monitoring.monitor.Monitor``)."""

    @property
    def service(self) -> str: ...

    def snapshot(self) -> Snapshot: ...


@cache
def static_files() -> dict[str, bytes]:
    """The files shipped in ``modelstream/gateway/static`` (the only ones served)."""
    folder = files("modelstream.gateway").joinpath("static")
    return {
        entry.name: entry.read_bytes()
        for entry in folder.iterdir()
        if entry.is_file() and "." + entry.name.rpartition(".")[2] in CONTENT_TYPES
    }


def _static_response(name: str) -> Response:
    body = static_files().get(name)
    if body is None:
        raise HTTPException(404, f"no dashboard file {name!r}; open / for the dashboard")
    kind = CONTENT_TYPES["." + name.rpartition(".")[2]]
    return Response(body, media_type=kind, headers=PAGE_HEADERS)


class Dashboard:
    """The dashboard's state: one results follower per service looked at, and monitors."""

    def __init__(self, plane: DataPlane, stats: StatsSource | None = None) -> None:
        self.plane = plane
        self._stats = stats
        self._feeds: dict[str, ServiceFeed] = {}
        self._monitors: dict[str, SnapshotReader] = {}
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def watch(self, *monitors: SnapshotReader) -> None:
        """Show the quality, agreement and drift these monitors measure (in-process)."""
        for monitor in monitors:
            self._monitors[monitor.service] = monitor

    def feed(self, service: str) -> ServiceFeed:
        """The follower of ``service`` (created on first use, restarted when idle)."""
        with self._lock:
            found = self._feeds.get(service)
            if found is None:
                found = self._feeds[service] = ServiceFeed(
                    self.plane.backplane, service, follow_scores=self._stats is None
                )
        found.touch()
        return found

    def stop(self) -> None:
        """Stop every follower (the app's shutdown)."""
        with self._lock:
            feeds = list(self._feeds.values())
        for feed in feeds:
            feed.stop()

    # -- the JSON ------------------------------------------------------------------------

    def services(self) -> list[dict[str, Any]]:
        """Every service with a deployment: name, champion, deadline (blocking)."""
        registry = self.plane.registry
        out = []
        for service in registry.services():
            try:
                deployment = registry.deployment(service)
            except ServiceNotFound:
                continue
            champion = deployment.champion
            out.append(
                {
                    "service": service,
                    "champion": None if champion is None else str(champion.ref),
                    "deadline_ms": deployment.deadline_ms,
                    "models": len(deployment.models),
                }
            )
        return out

    def _registry_part(self, service: str) -> dict[str, Any]:
        """Timeline, deployment and late count; re-read at most every few seconds."""
        hit = self._cache.get(service)
        if hit is not None and time.monotonic() - hit[0] < REGISTRY_TTL_S:
            return hit[1]
        registry = self.plane.registry
        history = registry.history(service)
        if not history:
            raise ServiceNotFound(service)
        descriptors = registry.descriptors(service)
        part = {
            "deployment": deployment_to_json(history[-1]),
            "timeline": timeline(descriptors, history),
            "late": {"count": self._late_count(service)},
        }
        self._cache[service] = (time.monotonic(), part)
        return part

    def _late_count(self, service: str) -> int:
        topic = ServiceTopics(service).late
        backplane = self.plane.backplane
        if topic not in {spec.name for spec in backplane.list_topics()}:
            return 0
        return sum(p.end - p.start for p in backplane.partitions(topic))

    def service_view(self, service: str) -> dict[str, Any]:
        """Everything the page shows of ``service`` (blocking; see the module doc)."""
        part = self._registry_part(service)
        feed = self.feed(service)
        series = feed.series()
        stats = self._stats(service) if self._stats is not None else feed.scores.snapshot()
        monitor = self._monitors.get(service)
        snap = monitor.snapshot().to_json() if monitor is not None else None
        return {
            "service": service,
            "at": now_ms(),
            "sources": {
                "series": f"{service}.results",
                "stats": "in-process scorers" if self._stats else f"{service}.scores",
                "monitor": snap is not None,
            },
            **part,
            "current": series.pop("current"),
            "series": series,
            "models": _models(part["deployment"], [s.to_json() for s in stats], series, snap),
            "monitor": snap,
            "alerts": feed.alerts(),
        }

    # -- routes --------------------------------------------------------------------------

    def routes(self, token: str | None) -> list[Route]:
        async def page(request: Request) -> Response:
            return _static_response("index.html")

        async def asset(request: Request) -> Response:
            return _static_response(str(request.path_params["name"]))

        async def service_list(request: Request) -> Response:
            return json_response({"services": await asyncio.to_thread(self.services)})

        async def one(request: Request) -> Response:
            service = check_name("service", str(request.path_params["service"]))
            return json_response(await asyncio.to_thread(self.service_view, service))

        def route(path: str, endpoint: Callable[..., Any], *, secret: bool) -> Route:
            wrapped = protected(token, endpoint) if secret else endpoint
            return Route(path, guarded(wrapped), methods=["GET"])

        return [
            route("/", page, secret=False),
            route("/static/{name}", asset, secret=False),
            route("/api/v1/dashboard", service_list, secret=True),
            route("/api/v1/services/{service}/dashboard", one, secret=True),
        ]


def _models(
    deployment: dict[str, Any],
    stats: list[dict[str, Any]],
    series: dict[str, Any],
    snap: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """One row per live version, then any other version with statistics."""
    roles = {f"{m['name']}@{m['version']}": m["role"] for m in deployment["models"]}
    by_ref = {s["ref"]: s for s in stats}
    watched = {m["model"]: m for m in (snap or {}).get("models", [])}
    answers = {ref: sum(counts) for ref, counts in series["answers"].items()}
    answered = sum(answers.values())
    refs = list(roles) + sorted((set(by_ref) | set(watched)) - set(roles))
    rows = []
    for ref in refs:
        s = by_ref.get(ref, {})
        m = watched.get(ref)
        agreement = _agreement_of(ref, (snap or {}).get("agreement", []))
        rows.append(
            {
                "ref": ref,
                "role": roles.get(ref) or s.get("role") or (m or {}).get("role"),
                "live": ref in roles,
                "invocations": s.get("invocations", 0),
                "errors": s.get("errors", 0),
                "error_rate": s.get("error_rate"),
                "latency_ms": s.get("latency_ms"),
                "answers": answers.get(ref, 0),
                "answer_share": answers.get(ref, 0) / answered if answered else None,
                "quality": None if m is None else m["quality"],
                "primary": None if m is None else m["primary"],
                "labelled": 0 if m is None else m["labelled"],
                "score_drift": [] if m is None else m["score_drift"],
                "agreement": agreement,
            }
        )
    return rows


def _agreement_of(ref: str, pairs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for pair in pairs:
        if ref in (pair["a"], pair["b"]):
            other = pair["b"] if pair["a"] == ref else pair["a"]
            out.append({"with": other, "agreement": pair["agreement"], "n": pair["n"]})
    return out
