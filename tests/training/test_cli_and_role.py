"""``modelstream train`` (one cycle) and the trainer role's schedule trigger."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelstream.cli.app import app
from modelstream.clock import ManualClock
from modelstream.models.refs import ModelRef
from modelstream.training.config import TrainerConfig
from modelstream.training.trainer import Trainer

from .helpers import SERVICE, World, archive, concept, traffic, world

pytestmark = pytest.mark.integration


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    w = world(tmp_path)
    x, y = concept(200, seed=1)
    traffic(w, x, y)
    archive(w)
    yield w
    w.close()


def test_train_command_runs_one_cycle_and_reports_it(w: World) -> None:
    args = ["--backplane", w.settings.backplane, "train", "--service", SERVICE]
    fn = ["--function", "tests.training.functions:train_logreg", "--margin", "0.05"]
    done = CliRunner().invoke(app, [*args, *fn, "--deploy-as-challenger"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["published"] == "lr@2" and report["deployed_as_challenger"]
    assert report["rows"] == 160 and report["metrics"]["holdout_rows"] == 40
    live = {m.ref for m in w.registry.deployment(SERVICE).models}
    assert live == {ModelRef("lr", 1), ModelRef("lr", 2)}
    bad = CliRunner().invoke(app, [*args, "--function", "nope_module_q:train"])
    assert bad.exit_code == 1 and "does not import" in bad.stderr
    assert bad.stderr.count("\n") == 1


def test_the_role_runs_a_cycle_when_the_schedule_fires(w: World) -> None:
    clock = ManualClock()
    config = TrainerConfig("tests.training.functions:train_logreg", margin=0.05, every_seconds=600)
    trainer = Trainer(w.backplane, w.settings, SERVICE, config, clock=clock)
    trainer.start()
    try:
        assert trainer.results == []  # not due yet: the clock has not moved
        clock.advance(600_000)
        deadline = time.monotonic() + 30
        while not trainer.results and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [r.published.ref for r in trainer.results if r.published] == [ModelRef("lr", 2)]
    finally:
        trainer.stop()
