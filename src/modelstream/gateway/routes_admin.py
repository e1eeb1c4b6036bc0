"""Management over HTTP, under ``/api/v1``: the registry's operations as JSON.

Every route requires ``Authorization: Bearer <token>`` when ``Settings.api_token`` is
set (see :mod:`modelstream.gateway.auth`). Bodies are validated with pydantic (the
edge); a body that does not validate is a 400 naming the field. Every registry call
blocks on the backplane, so it runs in a worker thread. A change made here invalidates
the data plane's cached view of the service at once.

::

    GET  /api/v1/services                                   service names
    GET  /api/v1/services/{service}/models                  every published version
    POST /api/v1/services/{service}/models                  publish (base64 bytes)
    GET  /api/v1/services/{service}/models/{ref}            one version (name@version)
    GET  /api/v1/services/{service}/deployment              the deployment in force
    POST /api/v1/services/{service}/deployment              deploy
    GET  /api/v1/services/{service}/deployment/history      every deployment record
    POST /api/v1/services/{service}/promote                 make a version the champion
    POST /api/v1/services/{service}/rollback                back to the previous deployment
    PUT  /api/v1/services/{service}/policy                  switch the rendezvous policy
    GET  /api/v1/services/{service}/stats                   per-model statistics
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelstream.backplane.records import now_ms
from modelstream.errors import InvalidRequest
from modelstream.gateway.auth import protected
from modelstream.gateway.dataplane import DataPlane
from modelstream.gateway.errors import guarded
from modelstream.gateway.http import json_body, json_response
from modelstream.gateway.stats import StatsSource, stats_from_scores, stats_json
from modelstream.models.codec import deployment_to_json
from modelstream.models.deployment import Policy, PolicyKind
from modelstream.models.descriptor import Lineage, TrainingSpan
from modelstream.models.refs import ModelRef
from modelstream.wire.topics import check_name


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


B = TypeVar("B", bound=_Body)


class TrainingBody(_Body):
    start: int | None = None
    end: int | None = None
    rows: Annotated[int, Field(ge=0)] | None = None


class MetaBody(_Body):
    created_by: str = ""
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    feature_set: str | None = None
    parent_version: Annotated[int, Field(ge=1)] | None = None
    training: TrainingBody = TrainingBody()


class PublishBody(_Body):
    name: str
    format: str = "onnx"
    data: str  # base64 of the model bytes
    version: Annotated[int, Field(ge=1)] | None = None
    entrypoint: str | None = None
    meta: MetaBody = MetaBody()


class PolicyBody(_Body):
    kind: PolicyKind = PolicyKind.PREFERENCE
    order: list[str] = []
    min_answers: Annotated[int, Field(ge=1)] = 1
    combine: str = "vote"
    reason: str = ""

    def policy(self) -> Policy:
        return Policy(self.kind, tuple(self.order), self.min_answers, self.combine)


class DeployBody(_Body):
    champion: str
    challengers: list[str] = []
    canary: str | None = None
    decoys: list[str] = []
    shadows: list[str] = []
    policy: PolicyBody | None = None
    deadline_ms: Annotated[int, Field(ge=1)] | None = None
    reason: str = ""


class PromoteBody(_Body):
    model: str
    reason: str = ""


class RollbackBody(_Body):
    reason: str = ""


async def _parse(request: Request, kind: type[B]) -> B:
    raw = await json_body(request)
    try:
        return kind.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidRequest(f"{where}: {first['msg']}") from None


def _ref(text: str) -> ModelRef:
    try:
        return ModelRef.parse(text)
    except Exception as exc:
        raise InvalidRequest(str(exc)) from None


def _lineage(meta: MetaBody) -> Lineage:
    return Lineage(
        created_at=now_ms(),
        created_by=meta.created_by,
        training=TrainingSpan(meta.training.start, meta.training.end, meta.training.rows),
        metrics=dict(meta.metrics),
        parent_version=meta.parent_version,
        feature_set=meta.feature_set,
        tags=dict(meta.tags),
    )


def admin_routes(  # noqa: PLR0915 - one closure per route reads best
    plane: DataPlane, token: str | None, stats: StatsSource | None = None
) -> list[Route]:
    """The management routes, bound to ``plane``'s registry."""
    registry = plane.registry

    def service_of(request: Request) -> str:
        return check_name("service", str(request.path_params["service"]))

    async def services(request: Request) -> Response:
        return json_response({"services": await asyncio.to_thread(registry.services)})

    async def models(request: Request) -> Response:
        found = await asyncio.to_thread(registry.descriptors, service_of(request))
        return json_response({"models": [d.summary() for d in found]})

    async def model(request: Request) -> Response:
        ref = _ref(str(request.path_params["ref"]))
        found = await asyncio.to_thread(registry.descriptor, service_of(request), ref)
        return json_response(found.summary())

    async def publish(request: Request) -> Response:
        service = service_of(request)
        body = await _parse(request, PublishBody)
        try:
            data = base64.b64decode(body.data, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("data: must be the model bytes in base64") from None
        descriptor = await asyncio.to_thread(
            registry.publish,
            service,
            check_name("model", body.name),
            data,
            format=body.format,
            version=body.version,
            entrypoint=body.entrypoint,
            lineage=_lineage(body.meta),
        )
        plane.catalog.invalidate(service)
        return json_response(descriptor.summary(), status=201)

    async def deployment(request: Request) -> Response:
        found = await asyncio.to_thread(registry.deployment, service_of(request))
        return json_response(deployment_to_json(found))

    async def history(request: Request) -> Response:
        found = await asyncio.to_thread(registry.history, service_of(request))
        return json_response({"deployments": [deployment_to_json(d) for d in found]})

    async def deploy(request: Request) -> Response:
        service = service_of(request)
        body = await _parse(request, DeployBody)
        done = await asyncio.to_thread(
            lambda: registry.deploy(
                service,
                _ref(body.champion),
                challengers=[_ref(r) for r in body.challengers],
                canary=None if body.canary is None else _ref(body.canary),
                decoys=[_ref(r) for r in body.decoys],
                shadows=[_ref(r) for r in body.shadows],
                policy=None if body.policy is None else body.policy.policy(),
                deadline_ms=body.deadline_ms,
                reason=body.reason,
            )
        )
        plane.catalog.invalidate(service)
        return json_response(deployment_to_json(done), status=201)

    async def promote(request: Request) -> Response:
        service = service_of(request)
        body = await _parse(request, PromoteBody)
        done = await asyncio.to_thread(registry.promote, service, _ref(body.model), body.reason)
        plane.catalog.invalidate(service)
        return json_response(deployment_to_json(done))

    async def rollback(request: Request) -> Response:
        service = service_of(request)
        body = await _parse(request, RollbackBody)
        done = await asyncio.to_thread(registry.rollback, service, body.reason)
        plane.catalog.invalidate(service)
        return json_response(deployment_to_json(done))

    async def set_policy(request: Request) -> Response:
        service = service_of(request)
        body = await _parse(request, PolicyBody)
        await asyncio.to_thread(registry.set_policy, service, body.policy(), body.reason)
        plane.catalog.invalidate(service)
        found = await asyncio.to_thread(registry.deployment, service)
        return json_response(deployment_to_json(found))

    async def model_stats(request: Request) -> Response:
        service = service_of(request)
        await asyncio.to_thread(registry.deployment, service)  # ServiceNotFound first
        if stats is not None:
            figures = await asyncio.to_thread(stats, service)
        else:
            figures = await asyncio.to_thread(stats_from_scores, plane.backplane, service)
        return json_response({"service": service, "models": stats_json(figures)})

    def route(path: str, endpoint: Any, method: str) -> Route:
        return Route(path, guarded(protected(token, endpoint)), methods=[method])

    base = "/api/v1/services"
    one = base + "/{service}"
    return [
        route(base, services, "GET"),
        route(f"{one}/models", models, "GET"),
        route(f"{one}/models", publish, "POST"),
        route(f"{one}/models/{{ref}}", model, "GET"),
        route(f"{one}/deployment", deployment, "GET"),
        route(f"{one}/deployment", deploy, "POST"),
        route(f"{one}/deployment/history", history, "GET"),
        route(f"{one}/promote", promote, "POST"),
        route(f"{one}/rollback", rollback, "POST"),
        route(f"{one}/policy", set_policy, "PUT"),
        route(f"{one}/stats", model_stats, "GET"),
    ]
