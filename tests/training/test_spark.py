"""The same training function on a local Spark session, reading the real archive."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelstream.models.refs import ModelRef
from modelstream.training.config import TrainerConfig
from modelstream.training.spark import SparkTrainer, local_session

from .helpers import SERVICE, T0, archive, concept, traffic, world

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_spark_trainer_publishes_the_same_kind_of_model(tmp_path: Path) -> None:
    w = world(tmp_path)
    spark = local_session(cores=1)
    try:
        x, y = concept(300, seed=1)
        traffic(w, x, y)
        archive(w)
        config = TrainerConfig("tests.training.functions:train_logreg", margin=0.05)
        with SparkTrainer(w.backplane, w.settings, SERVICE, config, spark=spark) as trainer:
            result = trainer.run_once()
        d = result.published
        assert d is not None and d.ref == ModelRef("lr", 2)
        assert d.lineage.training.rows == 240 and d.lineage.training.start == T0
        assert result.evaluation is not None and result.evaluation.champion_source == "rescore"
        assert d.lineage.metrics["holdout_accuracy"] > 0.8
    finally:
        spark.stop()
        w.close()
