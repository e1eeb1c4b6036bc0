"""The registry follower: live state for long-running roles; bad records are skipped."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from modelstream.backplane.memory import MemoryBackplane
from modelstream.backplane.records import OutRecord
from modelstream.models.deployment import Deployment
from modelstream.models.descriptor import ModelDescriptor
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry, RegistryFollower
from modelstream.settings import Settings

Seen = list[tuple[Deployment | None, dict[ModelRef, ModelDescriptor]]]


class Recorder:
    def __init__(self) -> None:
        self.seen: Seen = []
        self.changed = threading.Condition()

    def __call__(self, d: Deployment | None, models: dict[ModelRef, ModelDescriptor]) -> None:
        with self.changed:
            self.seen.append((d, models))
            self.changed.notify_all()

    def wait_for(self, test: object, timeout: float = 5.0) -> None:
        def ok() -> bool:
            return bool(self.seen) and bool(test(*self.seen[-1]))  # type: ignore[operator]

        with self.changed:
            assert self.changed.wait_for(ok, timeout), self.seen[-1:] or "no change seen"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[MemoryBackplane, Registry]:
    settings = Settings(backplane="memory://", model_store_dir=str(tmp_path))
    backplane = MemoryBackplane(settings)
    return backplane, Registry(backplane, settings)


def test_follower_sees_existing_and_new_state(
    setup: tuple[MemoryBackplane, Registry], onnx_bytes: bytes
) -> None:
    backplane, registry = setup
    registry.publish("svc", "a", onnx_bytes, format="onnx")
    recorder = Recorder()
    follower = RegistryFollower(backplane, "svc", recorder)
    follower.start()
    try:
        assert follower.wait_caught_up(5)
        recorder.wait_for(lambda d, m: d is None and set(map(str, m)) == {"a@1"})
        registry.deploy("svc", ModelRef("a", 1))
        recorder.wait_for(lambda d, m: d is not None and d.revision == 1)
        registry.publish("svc", "a", onnx_bytes, format="onnx")
        registry.promote("svc", ModelRef("a", 2))
        recorder.wait_for(lambda d, m: d.champion.ref == ModelRef("a", 2) and len(m) == 2)
        assert follower.deployment == registry.deployment("svc")
    finally:
        follower.stop()


def test_invalid_records_are_dead_lettered_and_skipped(
    setup: tuple[MemoryBackplane, Registry], onnx_bytes: bytes
) -> None:
    backplane, registry = setup
    recorder = Recorder()
    follower = RegistryFollower(backplane, "svc", recorder)
    follower.start()
    try:
        backplane.produce("svc.models", [OutRecord(b"{not json", key=b"x@1")])
        backplane.produce("svc.deployment", [OutRecord(b'{"service": "svc"}', key=b"svc")])
        good = registry.publish("svc", "a", onnx_bytes, format="onnx")
        # A valid descriptor under another model's key does not belong there.
        backplane.produce("svc.models", [OutRecord(backplane_value(good), key=b"b@9")])
        registry.deploy("svc", good.ref)
        recorder.wait_for(lambda d, m: d is not None and list(m) == [good.ref])
        consumer = backplane.consumer(["svc.dead-letter"])
        reasons = [r.header("x-reason") for r in consumer.poll(10, timeout=1.0)]
        consumer.close()
        assert len(reasons) == 3 and all(reasons)
        # The one-shot reads skip them too.
        assert [d.ref for d in registry.descriptors("svc")] == [good.ref]
    finally:
        follower.stop()


def test_a_failing_callback_does_not_stop_the_follower(
    setup: tuple[MemoryBackplane, Registry], onnx_bytes: bytes
) -> None:
    backplane, registry = setup
    calls: list[int] = []

    def explode(d: Deployment | None, m: dict[ModelRef, ModelDescriptor]) -> None:
        calls.append(len(m))
        raise RuntimeError("callback bug")

    follower = RegistryFollower(backplane, "svc", explode, poll_timeout=0.05)
    follower.start()
    try:
        registry.publish("svc", "a", onnx_bytes, format="onnx")
        follower.wait_caught_up(5)
        registry.publish("svc", "a", onnx_bytes, format="onnx")
        deadline = threading.Event()
        for _ in range(100):
            if calls and calls[-1] == 2:
                break
            deadline.wait(0.05)
        assert calls[-1] == 2
    finally:
        follower.stop()


def backplane_value(d: ModelDescriptor) -> bytes:
    from modelstream.models.codec import encode_descriptor

    return encode_descriptor(d)


def test_a_follower_of_the_deployment_alone_reads_no_model(
    setup: tuple[MemoryBackplane, Registry], onnx_bytes: bytes
) -> None:
    backplane, registry = setup
    registry.publish("svc", "a", onnx_bytes, format="onnx")
    registry.deploy("svc", ModelRef("a", 1))
    backplane.produce("svc.models", [OutRecord(b"not a descriptor", b"a@9")])
    follower = RegistryFollower(backplane, "svc", Recorder(), models=False)
    follower.start()
    try:
        assert follower.wait_caught_up(5)
        deployment = follower.deployment
        assert deployment is not None and deployment.revision == 1
        assert follower.descriptors == {}
    finally:
        follower.stop()
    # the poisoned descriptor was never read, so never dead-lettered
    assert "svc.dead-letter" not in {t.name for t in backplane.list_topics()}
