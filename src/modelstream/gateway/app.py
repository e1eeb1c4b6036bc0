"""The gateway's Starlette application: protocol routes, management, metrics, OpenAPI.

:func:`build_app` wires a :class:`~modelstream.gateway.dataplane.DataPlane` (the core)
to HTTP. The app's lifespan starts the data plane (producer thread, reply listeners)
and stops it on shutdown, so running the app under any ASGI server is enough.

Other endpoints::

    GET /               the web dashboard (gateway/dashboard.py; its JSON under /api/v1)
    GET /metrics        Prometheus text format (names prefixed ``modelstream_``)
    GET /openapi.json   the OpenAPI 3 document of every endpoint (gateway/openapi.yaml)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from functools import cache
from importlib.resources import files
from typing import Any

import yaml
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelstream.gateway.dashboard import Dashboard
from modelstream.gateway.dataplane import DataPlane
from modelstream.gateway.errors import guarded, http_exception
from modelstream.gateway.http import json_response
from modelstream.gateway.routes_admin import admin_routes
from modelstream.gateway.routes_v2 import v2_routes
from modelstream.gateway.stats import StatsSource


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI document shipped as ``modelstream/gateway/openapi.yaml``."""
    text = files("modelstream.gateway").joinpath("openapi.yaml").read_text("utf-8")
    document: dict[str, Any] = yaml.safe_load(text)
    return document


def build_app(
    plane: DataPlane,
    *,
    services: Iterable[str] = (),
    stats: StatsSource | None = None,
) -> Starlette:
    """The gateway app over ``plane``; reply listeners for ``services`` start eagerly.

    Management routes require ``plane.settings.api_token`` when it is set. ``stats``
    supplies in-process per-model statistics; without it they are rebuilt from the
    scores topic.
    """
    eager = tuple(services)
    dashboard = Dashboard(plane, stats)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await plane.start(eager)
        try:
            yield
        finally:
            await asyncio.to_thread(dashboard.stop)
            await plane.stop()

    @guarded
    async def metrics(request: Request) -> Response:
        return Response(plane.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @guarded
    async def openapi(request: Request) -> Response:
        return json_response(openapi_document())

    routes = [
        *v2_routes(plane),
        *admin_routes(plane, plane.settings.api_token, stats),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        *dashboard.routes(plane.settings.api_token),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_exception},
    )
    app.state.plane = plane
    app.state.dashboard = dashboard  # Serving adds its monitors: dashboard.watch(...)
    return app
