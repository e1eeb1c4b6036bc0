"""compare(): quality with intervals, a paired test and a winner, on the joined archive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelstream.archive.archiver import Archiver
from modelstream.archive.reader import ArchiveReader, score_column
from modelstream.backplane.memory import MemoryBackplane
from modelstream.errors import ConfigurationError
from modelstream.models.refs import ModelRef
from modelstream.monitoring.compare import compare
from tests.archive.helpers import produce, traffic

GBM, LR = ModelRef("gbm", 1), ModelRef("lr", 1)


def joined(tmp_path: Path, n: int, accuracy: tuple[float, float]) -> pd.DataFrame:
    bp = MemoryBackplane()
    produce(bp, "svc", traffic("svc", n, accuracy=accuracy, seed=4))
    archiver = Archiver(bp, "svc", tmp_path, flush_rows=5000, flush_seconds=60)
    while archiver.step(timeout=0.05):
        pass
    archiver.close()
    return ArchiveReader(tmp_path).joined("svc")


def test_a_clearly_better_classifier_wins(tmp_path: Path) -> None:
    result = compare(joined(tmp_path, 400, (0.92, 0.6)), LR, GBM)
    assert result.task == "classification" and result.n_paired == 400
    assert result.test == "mcnemar-chi2" and result.p_value < 0.01
    assert result.winner == GBM
    names = [m.name for m in result.a.metrics]
    assert names == ["accuracy", "log_loss", "roc_auc"]
    acc = result.b.primary
    assert acc.low < acc.value < acc.high and acc.value > 0.85
    assert result.a.latency.p50 > result.b.latency.p50  # lr is the slow one
    assert result.a.scored == 400 and result.a.errors == 0
    as_json = result.to_json()
    assert as_json["winner"] == "gbm@1" and as_json["b"]["metrics"]["accuracy"]["value"] > 0.85


def test_identical_models_have_no_winner(tmp_path: Path) -> None:
    frame = joined(tmp_path, 200, (0.8, 0.8))
    for field in ("prediction", "prediction_text", "probabilities", "error", "latency_ms"):
        frame[score_column(LR, field)] = frame[score_column(GBM, field)]
    result = compare(frame, GBM, LR)
    assert result.winner is None and result.p_value == 1.0


def test_regression_uses_mae_and_a_paired_bootstrap() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(10, 3, 300)
    frame = pd.DataFrame({"request_id": [f"r{i}" for i in range(300)], "label": y})
    frame["label_text"] = frame["label"].astype(str)
    for ref, noise in ((GBM, 0.3), (LR, 2.0)):
        pred = y + rng.normal(0, noise, 300)
        frame[score_column(ref, "prediction")] = pred
        frame[score_column(ref, "prediction_text")] = pred.astype(str)
        frame[score_column(ref, "probabilities")] = None
        frame[score_column(ref, "error")] = None
        frame[score_column(ref, "latency_ms")] = 1.0
    result = compare(frame, GBM, LR)
    assert result.task == "regression" and result.test == "paired-bootstrap"
    assert [m.name for m in result.a.metrics] == ["mae", "rmse"]
    assert result.winner == GBM and result.p_value < 0.01


def test_missing_scores_and_no_pairs_are_explained(tmp_path: Path) -> None:
    frame = joined(tmp_path, 20, (0.9, 0.9))
    with pytest.raises(ConfigurationError, match="no scores of mlp@1"):
        compare(frame, GBM, ModelRef("mlp", 1))
    frame["label_text"] = None
    with pytest.raises(ConfigurationError, match="no labelled request"):
        compare(frame, GBM, LR)
    with pytest.raises(ConfigurationError, match="two different"):
        compare(frame, GBM, GBM)
