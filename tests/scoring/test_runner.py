from __future__ import annotations

import time

import numpy as np
import pytest

from modelstream.errors import ScoringError
from modelstream.scoring.runner import ModelRunner

from .fakes import HangingModel, RaisingModel, SumModel

X = {"input": np.ones((2, 3), np.float32)}


def test_run_returns_outputs_and_time() -> None:
    runner = ModelRunner(1.0)
    try:
        outputs, elapsed = runner.run(SumModel(), X)
        assert outputs["y"].tolist() == [3.0, 3.0] and elapsed >= 0
    finally:
        runner.close()


def test_raising_model_becomes_scoring_error_and_runner_goes_on() -> None:
    runner = ModelRunner(1.0)
    try:
        with pytest.raises(ScoringError, match="ValueError: boom"):
            runner.run(RaisingModel(), X)
        assert runner.run(SumModel(), X)[0]["y"].shape == (2,)
    finally:
        runner.close()


def test_hanging_model_times_out_and_a_fresh_worker_serves_next() -> None:
    runner = ModelRunner(0.1)
    hanging = HangingModel()
    try:
        started = time.monotonic()
        with pytest.raises(ScoringError, match="timeout of 100 ms"):
            runner.run(hanging, X)
        assert time.monotonic() - started < 2.0
        assert runner.abandoned == 1 and runner.busy_models == [hanging]
        assert runner.run(SumModel(), X)[0]["y"].tolist() == [3.0, 3.0]
    finally:
        hanging.release.set()
        runner.close()
    assert runner.abandoned == 0


def test_non_dict_outputs_and_closed_runner_are_errors() -> None:
    class Bad(SumModel):
        def predict(self, inputs):  # type: ignore[no-untyped-def]
            return [1, 2]

    runner = ModelRunner(1.0)
    with pytest.raises(ScoringError, match="not a dict"):
        runner.run(Bad(), X)
    runner.close()
    with pytest.raises(ScoringError, match="closed"):
        runner.run(SumModel(), X)
