"""Canary rollout and automatic promotion end to end: the controller over a real
:class:`ScoreTally` of produced scores, and ``modelstream rollout start`` and
``modelstream auto-promote`` as a user runs them (SQLite backplane, real registry)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelstream.archive.archiver import Archiver
from modelstream.backplane.factory import open_backplane
from modelstream.backplane.memory import MemoryBackplane
from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord
from modelstream.cli.app import app
from modelstream.models.deployment import Role
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.rendezvous.rollout import RolloutController, RolloutPlan
from modelstream.rendezvous.tally import ScoreTally
from modelstream.settings import Settings
from tests.archive.helpers import produce, traffic
from tests.rendezvous.factories import score

OLD, NEW, LR = ModelRef("gbm", 1), ModelRef("gbm", 2), ModelRef("lr", 1)
GBM = OLD


@pytest.fixture(scope="module")
def onnx_bytes() -> bytes:
    from modelstream.testing.sklearn import onnx_classifier

    data, _ = onnx_classifier("logreg", features=4, rows=100)
    return data


def _launch(registry: Registry, onnx_bytes: bytes) -> None:
    for name in ("gbm", "gbm", "lr"):
        registry.publish("svc", name, onnx_bytes, format="onnx")
    registry.deploy("svc", OLD, challengers=[LR], reason="launch")


class Traffic:
    """Scores of ``gbm@2``, 30 per batch: healthy for ``healthy`` batches, then failing."""

    def __init__(self, backplane: Backplane, healthy: int) -> None:
        self._bp = backplane
        self._healthy = healthy
        self.batches = 0
        self._ids = itertools.count()

    def batch(self) -> None:
        failing = self.batches >= self._healthy
        scores = [
            score(f"r{next(self._ids)}", str(NEW), error="model raised: boom" if failing else None)
            for _ in range(30)
        ]
        self._bp.produce(
            "svc.scores", [OutRecord(s.encode(), s.request_id.encode()) for s in scores]
        )
        self.batches += 1


def test_a_model_that_starts_failing_is_rolled_back_on_its_counted_scores(
    tmp_path: Path, onnx_bytes: bytes
) -> None:
    bp = MemoryBackplane()
    settings = Settings(backplane="memory://", model_store_dir=str(tmp_path / "store"))
    registry = Registry(bp, settings)
    _launch(registry, onnx_bytes)
    base = registry.deployment("svc")
    feed, stop = Traffic(bp, healthy=3), threading.Event()
    plan = RolloutPlan(NEW, (0.1, 0.5, 1.0), every=50, max_error_rate=0.2)
    try:
        with ScoreTally(bp, "svc") as tally:

            def before_check() -> None:
                feed.batch()
                tally.poll(timeout=1.0)
                if feed.batches > 20:  # a rollout that never ends fails the test, not CI
                    stop.set()

            controller = RolloutController(registry, "svc", plan, errors=tally)
            status = controller.run(stop, poll_s=0.01, before_check=before_check)
            counted = tally.counts("svc", NEW)
    finally:
        bp.close()
    # 60 healthy scores moved it to step 2 (50%); the 4th batch failed: 30 errors in 120.
    assert counted == (120, 30)
    assert status.state == "rolled_back" and status.step == 2
    assert status.reason == (
        "rollback of rollout gbm@2 at 50%: error rate 0.250 > 0.2 over 120 scores"
    )
    now = registry.deployment("svc")
    assert now.models == base.models and now.policy == base.policy
    reasons = [d.reason for d in registry.history("svc")]
    assert reasons[-3:] == [
        "rollout gbm@2: step 1/3, 10% of answers (rollout gbm@2 over gbm@1)",
        "rollout gbm@2: step 2/3, 50% of answers (60 new scores, healthy)",
        status.reason,
    ]


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[tuple[str, Backplane, Registry]]:
    url = f"sqlite://{tmp_path / 'bp'}"
    settings = Settings(backplane=url)
    bp = open_backplane(url, settings)
    yield url, bp, Registry(bp, settings)
    bp.close()


def test_rollout_start_rolls_back_a_failing_version_and_exits_1(
    sqlite: tuple[str, Backplane, Registry], onnx_bytes: bytes
) -> None:
    url, bp, registry = sqlite
    _launch(registry, onnx_bytes)
    base = registry.deployment("svc")
    feed, done = Traffic(bp, healthy=0), threading.Event()

    def serve() -> None:  # the scorers, once the command has deployed its first step
        while not done.wait(0.02):
            if (registry.deployment("svc").reason or "").startswith("rollout gbm@2: step 1"):
                break
        while not done.wait(0.05) and feed.batches < 200:
            feed.batch()

    scorer = threading.Thread(target=serve)
    scorer.start()
    try:
        args = ["--backplane", url, "rollout", "start", "svc", "gbm@2", "--every", "40"]
        args += ["--max-error-rate", "0.2", "--steps", "10,100", "--poll", "0.02"]
        out = CliRunner().invoke(app, args)
    finally:
        done.set()
        scorer.join()
    assert out.exit_code == 1, out.output
    lines = out.output.splitlines()
    assert (
        lines[0] == "[running] rollout gbm@2: step 1/2, 10% of answers (rollout gbm@2 over gbm@1)"
    )
    assert lines[-1].startswith("[rolled_back] rollback of rollout gbm@2 at 10%: error rate")
    now = registry.deployment("svc")
    assert now.models == base.models and now.reason == lines[-1].removeprefix("[rolled_back] ")


def test_auto_promote_dry_run_reports_and_then_promotes(
    sqlite: tuple[str, Backplane, Registry], tmp_path: Path, onnx_bytes: bytes
) -> None:
    url, bp, registry = sqlite
    produce(bp, "svc", traffic("svc", 300, accuracy=(0.92, 0.6), seed=3))
    archiver = Archiver(bp, "svc", tmp_path / "bp" / "archive", flush_rows=5000)
    while archiver.step(timeout=0.05):
        pass
    archiver.close()
    for name in ("gbm", "lr"):
        registry.publish("svc", name, onnx_bytes, format="onnx")
    before = registry.deploy("svc", LR, challengers=[GBM])
    dry = CliRunner().invoke(
        app, ["--backplane", url, "auto-promote", "svc", "--min-labels", "100", "--dry-run"]
    )
    assert dry.exit_code == 0, dry.output
    assert dry.output.startswith("would auto-promote gbm@1 over lr@1: accuracy")
    assert "on 300 labelled requests" in dry.output
    assert registry.deployment("svc").revision == before.revision  # nothing written
    real = CliRunner().invoke(
        app, ["--backplane", url, "auto-promote", "svc", "--min-labels", "100"]
    )
    assert real.exit_code == 0, real.output
    now = registry.deployment("svc")
    assert (
        real.output.startswith("auto-promote gbm@1 over lr@1")
        and f"(revision {now.revision})" in real.output
    )
    assert {str(m.ref): m.role for m in now.models} == {
        "gbm@1": Role.CHAMPION,
        "lr@1": Role.CHALLENGER,
    }
