"""The canary rollout controller and automatic promotion, on the memory engine with the
real registry (deployment records are what a user checks)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelstream.backplane.memory import MemoryBackplane
from modelstream.clock import ManualClock
from modelstream.errors import ConfigurationError
from modelstream.models.deployment import Deployment, Policy, PolicyKind, Role
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.rendezvous.rollout import RolloutController, RolloutPlan
from modelstream.settings import Settings

OLD, NEW, LR = ModelRef("gbm", 1), ModelRef("gbm", 2), ModelRef("lr", 1)


@pytest.fixture(scope="module")
def onnx_bytes() -> bytes:
    from modelstream.testing.sklearn import onnx_classifier

    data, _ = onnx_classifier("logreg", features=4, rows=100)
    return data


@pytest.fixture
def registry(tmp_path: Path, onnx_bytes: bytes) -> Iterator[Registry]:
    settings = Settings(backplane="memory://", model_store_dir=str(tmp_path / "store"))
    backplane = MemoryBackplane()
    registry = Registry(backplane, settings)
    for name in ("gbm", "gbm", "lr"):
        registry.publish("svc", name, onnx_bytes, format="onnx")
    registry.deploy("svc", OLD, challengers=[LR], reason="launch")
    yield registry
    backplane.close()


class Errors:
    """A hand-fed ErrorSource."""

    def __init__(self) -> None:
        self.scored = 0
        self.errors = 0

    def counts(self, service: str, ref: ModelRef) -> tuple[int, int]:
        return (self.scored, self.errors) if ref == NEW else (0, 0)


class Quality:
    def __init__(self) -> None:
        self.value: float | None = None

    def quality(self, service: str, ref: ModelRef) -> float | None:
        return self.value if ref == NEW else None


def shares(d: Deployment) -> dict[str, tuple[Role, float]]:
    return {str(m.ref): (m.role, m.weight) for m in d.models}


def test_a_rollout_steps_up_on_every_n_scores_then_promotes(registry: Registry) -> None:
    errors = Errors()
    plan = RolloutPlan(NEW, (0.05, 0.5), every=100, max_error_rate=0.1)
    controller = RolloutController(registry, "svc", plan, errors=errors)
    first = controller.start()
    assert first.state == "running" and first.share == 0.05
    d = registry.deployment("svc")
    assert d.policy.split and "step 1/3, 5% of answers" in d.reason
    assert shares(d) == {
        "gbm@1": (Role.CHAMPION, 0.95),
        "gbm@2": (Role.CHALLENGER, 0.05),
        "lr@1": (Role.CHALLENGER, 0.0),
    }
    errors.scored = 99
    assert controller.check().step == 1  # not due yet
    errors.scored, errors.errors = 100, 5
    assert controller.check().share == 0.5
    errors.scored = 200
    done = controller.check()
    assert done.state == "promoted"
    final = registry.deployment("svc")
    assert shares(final) == {
        "gbm@2": (Role.CHAMPION, 1.0),
        "gbm@1": (Role.CHALLENGER, 1.0),
        "lr@1": (Role.CHALLENGER, 1.0),
    }
    assert not final.policy.split and "promoted at step 3/3" in final.reason
    assert [d.reason.split(":")[0] for d in registry.history("svc")][1:] == ["rollout gbm@2"] * 3


def test_a_rollout_is_rolled_back_on_errors_or_low_quality(registry: Registry) -> None:
    before = registry.deployment("svc")
    errors = Errors()
    plan = RolloutPlan(NEW, interval_s=60, max_error_rate=0.1, min_scores=50)
    clock = ManualClock()
    controller = RolloutController(registry, "svc", plan, errors=errors, clock=clock)
    controller.start()
    errors.scored, errors.errors = 40, 30  # too few scores to judge yet
    clock.advance(60_000)
    assert controller.check().share == 0.25  # 5% -> 25% on the interval
    errors.scored, errors.errors = 60, 30
    status = controller.check()
    assert (
        status.state == "rolled_back" and "error rate 0.500 > 0.1 over 60 scores" in status.reason
    )
    after = registry.deployment("svc")
    assert after.models == before.models and after.policy == before.policy
    assert after.reason.startswith("rollback of rollout gbm@2 at 25%")
    assert controller.check() is status  # finished: nothing more is written

    quality = Quality()
    plan = RolloutPlan(NEW, every=10, min_quality=0.8)
    controller = RolloutController(registry, "svc", plan, errors=Errors(), quality=quality)
    controller.start()
    quality.value = 0.9
    assert controller.check().state == "running"
    quality.value = 0.7
    assert "quality 0.7000 < 0.8" in controller.check().reason


def test_a_rollout_aborts_when_someone_else_changes_the_deployment(registry: Registry) -> None:
    controller = RolloutController(registry, "svc", RolloutPlan(NEW, every=10), errors=Errors())
    controller.start()
    registry.promote("svc", LR, reason="by hand")
    status = controller.check()
    assert status.state == "aborted" and "by hand" in status.reason
    assert registry.deployment("svc").reason == "by hand"


def test_rollout_plans_are_checked(registry: Registry) -> None:
    with pytest.raises(ConfigurationError, match="increasing"):
        RolloutPlan(NEW, (0.5, 0.25), every=1)
    with pytest.raises(ConfigurationError, match="--every N or --interval"):
        RolloutPlan(NEW)
    assert RolloutPlan(NEW, (0.1, 0.5), every=1).steps == (0.1, 0.5, 1.0)
    with pytest.raises(ConfigurationError, match="already the champion"):
        RolloutController(registry, "svc", RolloutPlan(OLD, every=1), errors=Errors()).start()
    consensus = registry.set_policy("svc", Policy(PolicyKind.CONSENSUS))
    assert consensus.policy.kind is PolicyKind.CONSENSUS
    RolloutController(registry, "svc", RolloutPlan(NEW, every=1), errors=Errors()).start()
    assert registry.deployment("svc").policy.kind is PolicyKind.PREFERENCE


def test_the_score_tally_counts_new_scores_once_per_version() -> None:
    from modelstream.backplane.records import OutRecord
    from modelstream.rendezvous.tally import ScoreTally
    from tests.rendezvous.factories import score

    bp = MemoryBackplane()
    try:
        old = score("r0", "gbm@2")
        bp.produce("svc.scores", [OutRecord(old.encode(), b"r0")])
        with ScoreTally(bp, "svc") as tally:  # from the end: r0 is not counted
            new = [score("r1", "gbm@2"), score("r2", "gbm@2", error="boom"), score("r1", "gbm@2")]
            bp.produce("svc.scores", [OutRecord(s.encode(), s.request_id.encode()) for s in new])
            bp.produce("svc.scores", [OutRecord(b"not json", b"x")])
            assert tally.poll(timeout=1.0) == 4
            assert tally.counts("svc", NEW) == (2, 1)  # the redelivered r1 counts once
            assert tally.counts("svc", OLD) == (0, 0) == tally.counts("other", NEW)
    finally:
        bp.close()
