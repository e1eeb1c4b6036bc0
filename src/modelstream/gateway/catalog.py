"""A short-lived cache of what the registry says about each service.

The registry's calls read the backplane (blocking), so the data plane must not make
them on every request. :class:`Catalog` keeps each service's deployment and champion
schema for ``ttl`` seconds (a deployment change made elsewhere is seen within that
time; one made through this gateway's management API invalidates it at once), and
model schemas forever (a published version is immutable). Concurrent misses for one
service share a single registry read.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from modelstream.errors import ModelstreamError
from modelstream.gateway.ports import RegistryPort
from modelstream.models.deployment import Deployment
from modelstream.models.refs import ModelRef
from modelstream.models.schema import ModelSchema


@dataclass(frozen=True, slots=True)
class ServiceView:
    """A service's deployment and the schema and format of its champion (if any)."""

    deployment: Deployment
    champion_schema: ModelSchema | None
    champion_format: str | None


class Catalog:
    """Cached registry reads for the data plane; see the module docstring."""

    def __init__(self, registry: RegistryPort, ttl: float = 1.0) -> None:
        self.registry = registry
        self._ttl = ttl
        self._views: dict[str, tuple[float, ServiceView | ModelstreamError]] = {}
        self._inflight: dict[str, asyncio.Future[ServiceView | ModelstreamError]] = {}
        self._schemas: dict[tuple[str, ModelRef], tuple[ModelSchema, str]] = {}

    def invalidate(self, service: str | None = None) -> None:
        """Forget cached deployments (of ``service``, or of every service)."""
        if service is None:
            self._views.clear()
        else:
            self._views.pop(service, None)

    async def view(self, service: str) -> ServiceView:
        """The service's view; raises ``ServiceNotFound`` (cached like a hit)."""
        cached = self._views.get(service)
        if cached is not None and cached[0] > time.monotonic():
            found = cached[1]
        else:
            pending = self._inflight.get(service)
            if pending is None:
                pending = asyncio.ensure_future(self._load(service))
                self._inflight[service] = pending
                pending.add_done_callback(lambda _: self._inflight.pop(service, None))
            found = await asyncio.shield(pending)
        if isinstance(found, ModelstreamError):
            raise found.with_traceback(None)  # a cached error must not grow a traceback
        return found

    async def schema(self, service: str, ref: ModelRef) -> tuple[ModelSchema, str]:
        """The schema and format of one version; raises ``ModelNotFound``."""
        key = (service, ref)
        hit = self._schemas.get(key)
        if hit is None:
            descriptor = await asyncio.to_thread(self.registry.descriptor, service, ref)
            hit = (descriptor.schema, descriptor.format)
            self._schemas[key] = hit
        return hit

    async def _load(self, service: str) -> ServiceView | ModelstreamError:
        found: ServiceView | ModelstreamError
        try:
            deployment = await asyncio.to_thread(self.registry.deployment, service)
            schema: ModelSchema | None = None
            fmt: str | None = None
            if deployment.champion is not None:
                schema, fmt = await self.schema(service, deployment.champion.ref)
            found = ServiceView(deployment, schema, fmt)
        except ModelstreamError as exc:
            found = exc
        self._views[service] = (time.monotonic() + self._ttl, found)
        return found
