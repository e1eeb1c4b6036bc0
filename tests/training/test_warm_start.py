"""Warm start: continuing the parent reaches a full retrain's quality with less work."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from modelstream.errors import ModelLoadError
from modelstream.models.refs import ModelRef
from modelstream.training.checkpoints import CheckpointStore
from modelstream.training.config import TrainerConfig
from modelstream.training.trainer import Trainer
from modelstream.training.warm import continue_fit

from . import functions
from .helpers import DRIFTED, SERVICE, STEP, T0, archive, concept, traffic, world

pytestmark = pytest.mark.integration


def test_warm_start_matches_a_full_retrain_with_fewer_trees(tmp_path: Path) -> None:
    w = world(tmp_path)
    try:
        old_x, old_y = concept(600, seed=1)
        traffic(w, old_x, old_y)
        new_x, new_y = concept(600, seed=2, weights=DRIFTED)
        traffic(w, new_x, new_y, first=600)
        archive(w)
        new_window = (T0 + 600 * STEP, T0 + 1200 * STEP)
        spec = "tests.training.functions:train_gbm"
        base = TrainerConfig(spec, output_name="gbm", margin=1.0, warm_start=True)
        with Trainer(w.backplane, w.settings, SERVICE, base) as trainer:
            first = trainer.run_once(T0, T0 + 600 * STEP)  # no checkpoint yet: from scratch
            assert first.published is not None and first.parent is None
            started = time.perf_counter()
            warm = trainer.run_once(*new_window)
            warm_seconds = time.perf_counter() - started
        full_config = TrainerConfig(spec, output_name="gbm-full", margin=1.0)
        with Trainer(w.backplane, w.settings, SERVICE, full_config) as trainer:
            started = time.perf_counter()
            full = trainer.run_once(*new_window)
            full_seconds = time.perf_counter() - started
        d = warm.published
        assert d is not None and warm.evaluation is not None and full.evaluation is not None
        assert d.ref == ModelRef("gbm", 2) and warm.parent == ModelRef("gbm", 1)
        assert d.lineage.parent_version == 1 and d.lineage.tags["warm_start"] == "true"
        # The work proxy: trees fitted this cycle (not wall time, which is only printed).
        warm_trees = len(warm.estimator.estimators_) - functions.TREES
        full_trees = len(full.estimator.estimators_)
        assert warm_trees == functions.ADDED_TREES < full_trees == functions.TREES
        print(f"warm {warm_seconds:.3f}s ({warm_trees} trees), full {full_seconds:.3f}s")
        # Same quality as the full retrain on the new concept, within a few points...
        assert warm.evaluation.candidate >= full.evaluation.candidate - 0.03
        # ...and better than the parent alone, which learned the old concept.
        parent = first.estimator
        holdout_x, holdout_y = new_x[-120:], new_y[-120:]
        assert warm.evaluation.candidate > parent.score(holdout_x, holdout_y)
    finally:
        w.close()


def test_checkpoints_are_skops_and_refuse_untrusted_types(tmp_path: Path) -> None:
    from river import linear_model

    store = CheckpointStore(tmp_path)
    river_model = linear_model.LogisticRegression()
    river_model.learn_one({"0": 1.0}, True)
    store.save("svc", ModelRef("online", 3), river_model)
    assert store.latest("svc", "online") == ModelRef("online", 3)
    again = store.load("svc", ModelRef("online", 3))
    assert again.predict_proba_one({"0": 1.0}) == river_model.predict_proba_one({"0": 1.0})

    class Odd:
        pass

    from sklearn.linear_model import SGDClassifier

    x, y = concept(50, seed=0)
    sgd = SGDClassifier(loss="log_loss", random_state=0).fit(x, y)
    sgd.odd = Odd()  # a type nobody listed as trusted
    store.save("svc", ModelRef("sgd", 1), sgd)
    with pytest.raises(ModelLoadError, match="not trusted"):
        store.load("svc", ModelRef("sgd", 1))


def test_continue_fit_with_partial_fit_counts_rows() -> None:
    from sklearn.linear_model import SGDClassifier

    x, y = concept(200, seed=0)
    model = SGDClassifier(loss="log_loss", random_state=0).fit(x, y)
    new_x, new_y = concept(100, seed=3, weights=DRIFTED)
    model, work = continue_fit(model, new_x, new_y, epochs=3)
    assert work.rows == 300 and work.trees == 0
