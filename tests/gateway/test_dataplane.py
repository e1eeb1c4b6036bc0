"""The data plane without HTTP: memory backplane, a stand-in registry and answerer."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from modelstream.backplane.memory import MemoryBackplane
from modelstream.backplane.records import OutRecord, now_ms
from modelstream.errors import DeadlineExceeded, InvalidRequest, NotReady, ServiceNotFound
from modelstream.gateway.dataplane import DataPlane
from modelstream.gateway.server import build_gateway
from modelstream.models.deployment import Deployment, LiveModel, Role
from modelstream.models.descriptor import Lineage, ModelDescriptor
from modelstream.models.refs import ModelRef
from modelstream.models.schema import ModelSchema, TensorSpec
from modelstream.settings import Settings
from modelstream.wire.requests import decode_request
from modelstream.wire.results import Result
from modelstream.wire.tensors import Tensor

SCHEMA = ModelSchema((TensorSpec("x", "FP32", (-1, 2)),), (TensorSpec("y", "FP32", (-1,)),))


class StandInRegistry:
    """Just enough of the registry: service ``svc`` with champion ``m@1``."""

    def __init__(self) -> None:
        self.deployments = {
            "svc": Deployment("svc", (LiveModel(ModelRef("m", 1), Role.CHAMPION),), deadline_ms=300)
        }

    def services(self) -> list[str]:
        return list(self.deployments)

    def deployment(self, service: str) -> Deployment:
        try:
            return self.deployments[service]
        except KeyError:
            raise ServiceNotFound(service) from None

    def descriptor(self, service: str, ref: ModelRef) -> ModelDescriptor:
        return ModelDescriptor(service, ref.name, ref.version, "onnx", "0" * 64, SCHEMA, Lineage(0))

    def __getattr__(self, name: str) -> Any:
        raise NotImplementedError(name)


LATE_MS = 30  # a late reply: this long past its deadline, well within the default grace


def answerer(backplane: MemoryBackplane, stop: threading.Event, silent: set[str]) -> None:
    """Sums each row of ``x``; first writes a stray reply for an id nobody waits for.
    Requests in ``silent`` get no reply; those whose id starts with ``late`` get theirs
    ``LATE_MS`` after their deadline."""
    consumer = backplane.consumer(["svc.requests"], start="earliest")
    try:
        while not stop.is_set():
            for record in consumer.poll(100, 0.05):
                request = decode_request(record.value)
                if request.id in silent or request.reply_to is None:
                    continue
                if request.id.startswith("late"):
                    time.sleep(max(0.0, (request.deadline + LATE_MS - now_ms()) / 1000))
                x = request.inputs[0].data
                sums = tuple(float(x[i] + x[i + 1]) for i in range(0, len(x), 2))
                stray = Result("stray", "svc", "preference", None, 0, now_ms(), error="x")
                result = Result(
                    request.id,
                    "svc",
                    "target" if request.target else "preference",
                    (Tensor("y", "FP32", (len(sums),), sums),),
                    request.deadline,
                    now_ms(),
                    model="m",
                    version=1,
                )
                backplane.produce(
                    request.reply_to,
                    [OutRecord(stray.encode(), b"stray"), OutRecord(result.encode(), request.key)],
                )
    finally:
        consumer.close()


@pytest.fixture
def plane() -> Iterator[tuple[DataPlane, set[str]]]:
    settings = Settings(backplane="memory://")
    backplane = MemoryBackplane(settings)
    stop, silent = threading.Event(), set[str]()
    thread = threading.Thread(target=answerer, args=(backplane, stop, silent))
    thread.start()
    try:
        yield DataPlane(backplane, settings, StandInRegistry(), "gw-unit"), silent
    finally:
        stop.set()
        thread.join()


def body(rows: list[list[float]], **extra: Any) -> dict[str, Any]:
    flat = [v for row in rows for v in row]
    return {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [len(rows), 2], "data": flat}],
        **extra,
    }


def test_infer_round_trip_and_concurrency(plane: tuple[DataPlane, set[str]]) -> None:
    dp, _ = plane

    async def run() -> list[Any]:
        await dp.start()
        try:
            calls = [dp.infer("svc", body([[i, 1.0]])) for i in range(50)]
            calls.append(dp.infer("svc", body([[1, 2]], id="mine"), version="1"))
            return await asyncio.gather(*calls)
        finally:
            await dp.stop()

    answers = asyncio.run(run())
    for i, (result, client_id, _) in enumerate(answers[:50]):
        assert result.outputs[0].data == (i + 1.0,)
        assert client_id is None
    result, client_id, _ = answers[50]
    assert client_id == "mine" and result.request_id == "mine" and result.policy == "target"
    assert dp.waiting() == {}
    text = dp.metrics.render().decode()
    assert 'modelstream_answers_total{model="m@1",service="svc"} 51.0' in text


def test_errors_before_and_after_producing(plane: tuple[DataPlane, set[str]]) -> None:
    dp, silent = plane
    silent.add("never")

    async def run() -> None:
        with pytest.raises(NotReady):
            await dp.infer("svc", body([[1, 2]]))
        await dp.start()
        try:
            with pytest.raises(ServiceNotFound):
                await dp.infer("other", body([[1, 2]]))
            with pytest.raises(InvalidRequest, match="'x'"):
                await dp.infer(
                    "svc",
                    {
                        "inputs": [
                            {"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2, 3]}
                        ]
                    },
                )
            with pytest.raises(DeadlineExceeded, match="30 ms"):
                await dp.infer("svc", body([[1, 2]], id="never", parameters={"deadline_ms": 30}))
        finally:
            await dp.stop()

    asyncio.run(run())
    assert 'modelstream_deadline_misses_total{service="svc"} 1.0' in dp.metrics.render().decode()


def test_a_reply_late_by_less_than_the_grace_is_still_the_answer(
    plane: tuple[DataPlane, set[str]],
) -> None:
    """A rendezvous slowed by load may send its (fallback) answer just after the deadline:
    the gateway still returns it within ``Settings.gateway_grace_ms``; a gateway with no
    grace has answered 'deadline missed' by then."""
    dp, _ = plane
    assert dp.settings.gateway_grace_ms > LATE_MS
    strict = DataPlane(dp.backplane, dp.settings, dp.registry, "gw-strict", grace_ms=0)

    async def run() -> None:
        await dp.start()
        await strict.start()
        try:
            result, _, _ = await dp.infer("svc", body([[1, 2]], id="late-1"))
            assert result.request_id == "late-1" and result.outputs is not None
            with pytest.raises(DeadlineExceeded):
                await strict.infer("svc", body([[1, 2]], id="late-2"))
        finally:
            await strict.stop()
            await dp.stop()

    asyncio.run(run())


def test_the_gateway_takes_its_grace_from_the_settings(
    plane: tuple[DataPlane, set[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    dp, _ = plane
    monkeypatch.setenv("MODELSTREAM_GATEWAY_GRACE_MS", "0")
    settings = Settings(backplane="memory://")
    _, strict = build_gateway(dp.backplane, settings, dp.registry, gateway_id="gw-env")

    async def run() -> None:
        await strict.start()
        try:
            with pytest.raises(DeadlineExceeded):
                await strict.infer("svc", body([[1, 2]], id="late-env"))
        finally:
            await strict.stop()

    asyncio.run(run())
