"""Open Inference Protocol (V2) REST routes: thin adapters over :class:`DataPlane`.

Paths follow the protocol (``{service}`` is its ``MODEL_NAME``)::

    GET  /v2  and  /v2/                               server metadata
    GET  /v2/health/live                              200 while the process serves
    GET  /v2/health/ready                             200 when every service can answer, else 503
    GET  /v2/models/{service}[/versions/{version}]         model metadata
    GET  /v2/models/{service}[/versions/{version}]/ready   200 when ready, else 503
    POST /v2/models/{service}[/versions/{version}]/infer   inference
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelstream.gateway.dataplane import DataPlane
from modelstream.gateway.errors import guarded, status_of
from modelstream.gateway.http import json_body, json_response
from modelstream.gateway.translate import infer_response


def _version(request: Request) -> str | None:
    version = request.path_params.get("version")
    return None if version is None else str(version)


def v2_routes(plane: DataPlane) -> list[Route]:
    """The protocol's routes, bound to ``plane``."""

    @guarded
    async def server_metadata(request: Request) -> Response:
        return json_response(plane.server_metadata())

    @guarded
    async def live(request: Request) -> Response:
        return json_response({"live": True})

    @guarded
    async def ready(request: Request) -> Response:
        await plane.server_ready()
        return json_response({"ready": True})

    @guarded
    async def model_metadata(request: Request) -> Response:
        service = request.path_params["service"]
        return json_response(await plane.model_metadata(service, _version(request)))

    @guarded
    async def model_ready(request: Request) -> Response:
        service = request.path_params["service"]
        await plane.model_ready(service, _version(request))
        return json_response({"name": service, "ready": True})

    @guarded
    async def infer(request: Request) -> Response:
        service = request.path_params["service"]
        try:
            payload = await json_body(request)
            result, client_id, outputs = await plane.infer(
                service, payload, version=_version(request)
            )
            return json_response(infer_response(result, outputs, client_id))
        except Exception as exc:
            plane.metrics.errors.labels(service, str(status_of(exc))).inc()
            raise

    model = "/v2/models/{service}"
    version = "/v2/models/{service}/versions/{version}"
    return [
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/", server_metadata, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route(model, model_metadata, methods=["GET"]),
        Route(f"{model}/ready", model_ready, methods=["GET"]),
        Route(f"{model}/infer", infer, methods=["POST"]),
        Route(version, model_metadata, methods=["GET"]),
        Route(f"{version}/ready", model_ready, methods=["GET"]),
        Route(f"{version}/infer", infer, methods=["POST"]),
    ]
