"""The gateway's core: the Open Inference Protocol data plane, independent of HTTP.

:class:`DataPlane` turns a protocol inference request into an
:class:`~modelstream.wire.requests.InferenceRequest` on ``<service>.requests`` and
awaits the :class:`~modelstream.wire.results.Result` the rendezvous sends to this
gateway's reply topic ``<service>.replies.<gateway_id>``. It also answers the
protocol's metadata and readiness questions. The HTTP routes only translate.

Contracts:

* **Validation first.** A body that is not a valid protocol request, or whose inputs
  do not fit the model's schema, raises ``InvalidRequest`` naming the input; nothing is
  produced.
* **Request id.** The body's ``id`` when given (it must be unique: the rendezvous answers
  an id once, so a reused id is not answered again), else a fresh random 128-bit hex id. Labels sent
  later join on this id.
* **Deadline.** ``parameters.deadline_ms`` when given, else the deployment's
  ``deadline_ms``, counted from when the gateway received the request. The gateway
  answers with the reply when it arrives, or raises ``DeadlineExceeded`` itself once
  the deadline plus ``grace_ms`` (default: ``Settings.gateway_grace_ms``) has passed
  (the rendezvous normally answers first, with its fallback).
* **Targeted versions.** ``version`` (see :func:`~modelstream.gateway.translate.parse_version`)
  sets the request's ``target`` so that only that model version answers, bypassing the
  rendezvous' choice. The version must be live in the deployment (``NotReady`` if it is
  published but not live, ``ModelNotFound`` if it does not exist).
* **Features.** For a service whose deployment names a ``feature_set``, the request is
  produced onto ``<service>.events`` by
  :func:`~modelstream.features.records.request_record` (keyed by its entity), not onto
  ``<service>.requests``: the featurizer fills in the entity's features as of the
  request's event time and forwards it to ``<service>.requests``. Such a request must
  name its entity (``parameters.entity``, else ``InvalidRequest``), and the model input
  named ``features`` is the featurizer's to fill, so the client does not send it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from modelstream import __version__
from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord, check_sizes, now_ms
from modelstream.errors import (
    DeadlineExceeded,
    InvalidRequest,
    ModelNotFound,
    ModelstreamError,
    NotReady,
    ServiceNotFound,
)
from modelstream.features.records import request_record
from modelstream.gateway.catalog import Catalog, ServiceView
from modelstream.gateway.metrics import GatewayMetrics
from modelstream.gateway.ports import RegistryPort
from modelstream.gateway.streams import BatchProducer, ReplyListener, fail_future
from modelstream.gateway.translate import (
    check_inputs,
    check_outputs,
    parse_infer,
    parse_version,
    schema_metadata,
)
from modelstream.models.refs import ModelRef
from modelstream.models.schema import ModelSchema
from modelstream.scoring.batcher import FEATURES_INPUT
from modelstream.settings import Settings
from modelstream.wire.requests import InferenceRequest, new_request_id
from modelstream.wire.results import Result
from modelstream.wire.topics import ServiceTopics, check_name

log = logging.getLogger(__name__)

PLATFORMS = {"onnx": "onnxruntime_onnx", "river": "river", "skops": "sklearn_skops"}
SERVER_NAME = "modelstream"
EXTENSIONS = ("model_repository", "statistics", "deadlines", "rendezvous")


def without_features_input(schema: ModelSchema) -> ModelSchema:
    """``schema`` less its ``features`` input, which the featurizer fills in."""
    inputs = tuple(s for s in schema.inputs if s.name != FEATURES_INPUT)
    return schema if len(inputs) == len(schema.inputs) else ModelSchema(inputs, schema.outputs)


class DataPlane:
    """Inference, metadata and readiness for every service on one backplane."""

    def __init__(
        self,
        backplane: Backplane,
        settings: Settings,
        registry: RegistryPort,
        gateway_id: str,
        *,
        metrics: GatewayMetrics | None = None,
        grace_ms: int | None = None,
        catalog_ttl: float = 1.0,
    ) -> None:
        self.backplane = backplane
        self.settings = settings
        self.gateway_id = check_name("gateway", gateway_id)
        self.catalog = Catalog(registry, catalog_ttl)
        self.metrics = metrics or GatewayMetrics()
        self._grace_ms = settings.gateway_grace_ms if grace_ms is None else grace_ms
        self._producer = BatchProducer(backplane, name=f"gateway-producer:{gateway_id}")
        self._listeners: dict[str, ReplyListener] = {}
        self._listener_lock = asyncio.Lock()
        self._started = False

    @property
    def registry(self) -> RegistryPort:
        return self.catalog.registry

    # -- lifecycle --------------------------------------------------------------------

    async def start(self, services: Iterable[str] = ()) -> None:
        """Start the producer, and reply listeners for ``services`` (others start lazily);
        read their registry views now, so that the first request of each does not pay
        the first registry read (on Kafka, a scan of the models topic)."""
        self._producer.start()
        for service in services:
            await self._listener(service)
            with contextlib.suppress(ModelstreamError):  # not deployed yet: a request says so
                await self.catalog.view(service)
        self._started = True

    async def stop(self) -> None:
        """Stop producing and listening; requests still waiting get ``NotReady``."""
        self._started = False
        listeners, self._listeners = list(self._listeners.values()), {}
        await asyncio.to_thread(self._stop_threads, listeners)

    def _stop_threads(self, listeners: list[ReplyListener]) -> None:
        self._producer.stop()
        for listener in listeners:
            listener.stop(NotReady("the gateway is stopping; retry on another instance"))

    async def _listener(self, service: str) -> ReplyListener:
        listener = self._listeners.get(service)
        if listener is None:
            async with self._listener_lock:
                listener = self._listeners.get(service)
                if listener is None:
                    topic = ServiceTopics(service).replies(self.gateway_id)
                    listener = await asyncio.to_thread(ReplyListener, self.backplane, topic)
                    self._listeners[service] = listener
        return listener

    # -- inference --------------------------------------------------------------------

    async def infer(
        self, service: str, payload: Any, *, version: str | None = None
    ) -> tuple[Result, str | None, tuple[str, ...]]:
        """Answer one protocol inference request (see the module docstring).

        Returns the result, the client's request id (``None`` when the gateway made
        one) and the output names the client asked for (empty: all).
        """
        received = time.perf_counter()
        self.metrics.requests.labels(service).inc()
        try:
            result, call_id, outputs = await self._infer(service, payload, version)
        except DeadlineExceeded:
            self.metrics.deadline_misses.labels(service).inc()
            raise
        self.metrics.latency.labels(service).observe(time.perf_counter() - received)
        self.metrics.decision_latency.labels(service).observe(result.decided_in_ms / 1000)
        if not result.deadline_met or result.outputs is None:
            self.metrics.deadline_misses.labels(service).inc()
        model = result.ref or ("fallback" if result.fallback else "none")
        self.metrics.answers.labels(service, model).inc()
        return result, call_id, outputs

    async def _infer(
        self, service: str, payload: Any, version: str | None
    ) -> tuple[Result, str | None, tuple[str, ...]]:
        # The deadline runs from receipt: time spent here (a registry read, parsing a big
        # body) is part of the client's budget, not added to it.
        received = now_ms()
        if not self._started:
            raise NotReady("the gateway is starting or stopping; retry shortly")
        topics = ServiceTopics(service)
        view = await self.catalog.view(service)
        call = parse_infer(payload)
        target: str | None = None
        if version is not None:
            ref = await self._live_version(service, view, version)
            schema, _ = await self.catalog.schema(service, ref)
            target = str(ref)
        elif view.champion_schema is None:
            raise NotReady(f"service {service!r} has no champion; deploy one")
        else:
            schema = view.champion_schema
        featurized = view.deployment.feature_set is not None
        if featurized:
            if call.entity is None:
                raise InvalidRequest(
                    f"service {service!r} computes features per entity: pass "
                    "parameters.entity (the entity key the request is about)"
                )
            schema = without_features_input(schema)
        check_inputs(call.inputs, schema)
        check_outputs(call.outputs, schema)
        listener = await self._listener(service)
        deadline_ms = call.deadline_ms or view.deployment.deadline_ms
        request = InferenceRequest(
            id=call.id or new_request_id(),
            service=service,
            event_time=received,
            deadline=received + deadline_ms,
            inputs=call.inputs,
            reply_to=listener.topic,
            entity=call.entity,
            parameters=call.parameters,
            target=target,
            sent_at=received,
        )
        if featurized:
            topic, record = topics.events, request_record(request)
        else:
            topic = topics.requests
            record = OutRecord(request.encode(), request.key, timestamp=received)
        # Checked here, not left to the shared producer: a record it refused would fail
        # every other request of its batch with it.
        check_sizes(topic, [record], self.backplane.max_record_bytes)
        future = listener.expect(request.id)
        loop = asyncio.get_running_loop()

        def failed(exc: BaseException) -> None:
            loop.call_soon_threadsafe(fail_future, future, exc)

        try:
            self._producer.submit(topic, record, failed)
            wait_s = (request.deadline + self._grace_ms - now_ms()) / 1000
            try:
                async with asyncio.timeout(wait_s):
                    result = await future
            except TimeoutError:
                raise DeadlineExceeded(
                    f"no answer for request {request.id!r} within its deadline of "
                    f"{deadline_ms} ms; check that the rendezvous and scorers of "
                    f"{service!r} are running"
                ) from None
        finally:
            listener.forget(request.id)
        return result, call.id, call.outputs

    async def _live_version(self, service: str, view: ServiceView, version: str) -> ModelRef:
        ref = parse_version(version, view.deployment)
        await self.catalog.schema(service, ref)  # ModelNotFound when never published
        if view.deployment.live_ref(ref) is None:
            raise NotReady(
                f"model {ref} of service {service!r} is published but not live, so no "
                "scorer answers it; deploy it (e.g. as a shadow) first"
            )
        return ref

    # -- metadata and readiness ---------------------------------------------------------

    def server_metadata(self) -> dict[str, Any]:
        """The protocol's server metadata."""
        return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}

    async def server_ready(self) -> None:
        """Raise ``NotReady`` unless started and every deployed service has a champion
        whose descriptor has been read (a service only published, never deployed, has
        nothing to serve and is skipped)."""
        if not self._started:
            raise NotReady("the gateway is starting or stopping")
        for service in await asyncio.to_thread(self.registry.services):
            try:
                await self.model_ready(service)
            except ServiceNotFound:
                continue

    async def model_ready(self, service: str, version: str | None = None) -> None:
        """Raise ``ServiceNotFound``/``ModelNotFound``/``NotReady`` unless it can answer.

        A deployed champion whose descriptor cannot be read (yet: on Kafka the deployment
        can be read before the descriptor published just ahead of it) is ``NotReady``.
        """
        try:
            view = await self.catalog.view(service)
        except ModelNotFound as exc:
            if version is not None:
                raise
            raise NotReady(
                f"service {service!r} has no champion that can be read yet ({exc}); "
                "publish it, or wait for its descriptor to arrive"
            ) from None
        if version is not None:
            await self._live_version(service, view, version)
        elif view.champion_schema is None:
            raise NotReady(f"service {service!r} has no champion; deploy one")

    async def model_metadata(self, service: str, version: str | None = None) -> dict[str, Any]:
        """The protocol's model metadata: live versions, platform, tensors of the schema."""
        view = await self.catalog.view(service)
        schema: ModelSchema | None = view.champion_schema
        fmt = view.champion_format
        if version is not None:
            ref = parse_version(version, view.deployment)
            schema, fmt = await self.catalog.schema(service, ref)
        versions = [str(m.ref) for m in view.deployment.models]
        return schema_metadata(service, versions, schema, PLATFORMS.get(fmt or "", fmt or ""))

    def waiting(self) -> Mapping[str, int]:
        """Requests awaiting their reply, per service."""
        return {s: listener.waiting for s, listener in self._listeners.items()}
