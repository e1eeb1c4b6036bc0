"""Warm start: continuing the parent reaches a full retrain's quality in less time."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelstream.errors import ConfigurationError, ModelLoadError
from modelstream.models.refs import ModelRef
from modelstream.training.checkpoints import CheckpointStore
from modelstream.training.config import TrainerConfig
from modelstream.training.trainer import Trainer
from modelstream.training.warm import Work, continue_fit

from . import functions
from .helpers import DRIFTED, SERVICE, STEP, T0, archive, concept, traffic, world

pytestmark = pytest.mark.integration


ROWS = 3000  # per concept: a full fit of TREES trees on 80% of them takes ~1 s here


def test_warm_start_matches_a_full_retrain_in_less_training_time(tmp_path: Path) -> None:
    """The issue's criterion: continuing the parent on the new concept reaches the quality
    of a full retrain on the same rows, and trains in less time. The time comparison is
    the exception to "no timed assertions" that the issue asks for; it is made robust by
    the size of the gap (a full fit of TREES trees against ADDED_TREES more, about 8x) and
    by taking the faster of two cycles on each side, so one stall cannot decide it."""
    w = world(tmp_path)
    try:
        old_x, old_y = concept(ROWS, seed=1)
        traffic(w, old_x, old_y)
        new_x, new_y = concept(ROWS, seed=2, weights=DRIFTED)
        traffic(w, new_x, new_y, first=ROWS)
        archive(w)
        new_window = (T0 + ROWS * STEP, T0 + 2 * ROWS * STEP)
        spec = "tests.training.functions:train_gbm"
        base = TrainerConfig(spec, output_name="gbm", margin=1.0, warm_start=True)
        with Trainer(w.backplane, w.settings, SERVICE, base) as trainer:
            first = trainer.run_once(T0, T0 + ROWS * STEP)  # no checkpoint yet: from scratch
            assert first.published is not None and first.parent is None
            assert first.timings_ms["parent"] < first.timings_ms["train"]
            warm = trainer.run_once(*new_window)
            again = trainer.run_once(*new_window)  # continues gbm@2: a second timing
        full_config = TrainerConfig(spec, output_name="gbm-full", margin=1.0)
        with Trainer(w.backplane, w.settings, SERVICE, full_config) as trainer:
            fulls = [trainer.run_once(*new_window) for _ in range(2)]
        full = fulls[0]
        d = warm.published
        assert d is not None and warm.evaluation is not None and full.evaluation is not None
        assert d.ref == ModelRef("gbm", 2) and warm.parent == ModelRef("gbm", 1)
        assert d.lineage.parent_version == 1 and d.lineage.tags["warm_start"] == "true"
        assert again.parent == ModelRef("gbm", 2)
        # The work done: trees fitted this cycle.
        warm_trees = len(warm.estimator.estimators_) - functions.TREES
        full_trees = len(full.estimator.estimators_)
        assert warm_trees == functions.ADDED_TREES < full_trees == functions.TREES
        # Less training time, the parent's read counted in: the warm cycle's "parent" and
        # "train" laps together against the full retrain's "train" lap.
        warm_ms = min(r.timings_ms["parent"] + r.timings_ms["train"] for r in (warm, again))
        full_ms = min(r.timings_ms["train"] for r in fulls)
        print(f"warm parent+train {warm_ms:.0f} ms ({warm_trees} trees), full {full_ms:.0f} ms")
        assert warm_ms < full_ms
        # Same quality as the full retrain on the same holdout of the new concept...
        assert warm.evaluation.candidate >= full.evaluation.candidate - 0.03
        # ...and better than the parent alone, which learned the old concept.
        parent = first.estimator
        holdout = round(ROWS * base.holdout_fraction)
        holdout_x, holdout_y = new_x[-holdout:], new_y[-holdout:]
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


def test_a_checkpoint_changed_on_disk_is_read_from_disk(tmp_path: Path) -> None:
    """The store's in-memory copy of what it saved is used only while the file still
    holds the bytes it wrote; it hands out copies, never its own."""
    from sklearn.linear_model import SGDClassifier

    x, y = concept(100, seed=0)
    mine = SGDClassifier(loss="log_loss", random_state=0).fit(x, y)
    store = CheckpointStore(tmp_path)
    store.save("svc", ModelRef("sgd", 1), mine)
    loaded = store.load("svc", ModelRef("sgd", 1))
    assert (loaded.coef_ == mine.coef_).all() and loaded is not mine
    loaded.coef_[:] = 0  # a caller continuing its copy
    assert (store.load("svc", ModelRef("sgd", 1)).coef_ == mine.coef_).all()

    theirs = SGDClassifier(loss="log_loss", random_state=1).fit(x, 1 - y)
    CheckpointStore(tmp_path).save("svc", ModelRef("sgd", 1), theirs)  # another writer
    assert (store.load("svc", ModelRef("sgd", 1)).coef_ == theirs.coef_).all()


def test_continue_fit_with_partial_fit_counts_rows() -> None:
    from sklearn.linear_model import SGDClassifier

    x, y = concept(200, seed=0)
    model = SGDClassifier(loss="log_loss", random_state=0).fit(x, y)
    new_x, new_y = concept(100, seed=3, weights=DRIFTED)
    model, work = continue_fit(model, new_x, new_y, epochs=3)
    assert work.rows == 300 and work.trees == 0


@pytest.mark.parametrize(
    ("function", "name"),
    [
        pytest.param("train_mlp", "mlp", id="network-fine-tuned"),
        pytest.param("train_sgd", "sgd", id="sgd-partial-fit"),
    ],
)
def test_a_warm_started_model_learns_the_new_concept_from_its_parent(
    tmp_path: Path, function: str, name: str
) -> None:
    """Two trainer cycles: from scratch on the old concept, then continued from that
    version on the drifted one; better there than the parent, which it names."""
    rows = 600
    w = world(tmp_path)
    try:
        old_x, old_y = concept(rows, seed=1)
        traffic(w, old_x, old_y)
        new_x, new_y = concept(rows, seed=2, weights=DRIFTED)
        traffic(w, new_x, new_y, first=rows)
        archive(w)
        config = TrainerConfig(
            f"tests.training.functions:{function}", output_name=name, margin=1.0, warm_start=True
        )
        with Trainer(w.backplane, w.settings, SERVICE, config) as trainer:
            first = trainer.run_once(T0, T0 + rows * STEP)
        # A new trainer, as after a restart: the parent comes from its skops file.
        with Trainer(w.backplane, w.settings, SERVICE, config) as trainer:
            warm = trainer.run_once(T0 + rows * STEP, T0 + 2 * rows * STEP)
    finally:
        w.close()
    assert first.published is not None and first.parent is None
    assert first.published.lineage.tags["warm_start"] == "false"
    d = warm.published
    assert d is not None and warm.evaluation is not None
    assert warm.parent == ModelRef(name, 1) and d.ref == ModelRef(name, 2)
    assert d.lineage.parent_version == 1 and d.lineage.tags["warm_start"] == "true"
    holdout = round(rows * config.holdout_fraction)
    parent_accuracy = first.estimator.score(new_x[-holdout:], new_y[-holdout:])
    print(f"{name}: parent {parent_accuracy:.3f}, warm {warm.evaluation.candidate:.3f}")
    assert warm.evaluation.candidate > parent_accuracy


def test_continue_fit_grows_histogram_boosting_by_whole_iterations() -> None:
    import copy

    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = concept(600, seed=1)
    new_x, new_y = concept(600, seed=2, weights=DRIFTED)
    test_x, test_y = new_x[400:], new_y[400:]
    parent = HistGradientBoostingClassifier(max_iter=50, random_state=0).fit(x, y)
    before = parent.score(test_x, test_y)
    model, work = continue_fit(copy.deepcopy(parent), new_x[:400], new_y[:400], add_trees=20)
    assert model.n_iter_ == 70 and work == Work(rows=400, trees=20)
    assert model.score(test_x, test_y) > before


def test_continue_fit_changes_a_river_model() -> None:
    from river import linear_model

    x, y = concept(200, seed=1)
    new_x, new_y = concept(200, seed=2, weights=DRIFTED)
    model, _ = continue_fit(linear_model.LogisticRegression(), x, y)
    probe = {str(i): float(v) for i, v in enumerate(new_x[0])}
    before = model.predict_proba_one(probe)[True]
    model, work = continue_fit(model, new_x, new_y)
    assert work == Work(rows=200)
    assert model.predict_proba_one(probe)[True] != pytest.approx(before, abs=1e-3)


def test_what_cannot_be_continued_says_what_to_do() -> None:
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC

    x, y = concept(100, seed=1)
    # A fixed seed: lbfgs from some random starts stops early with a ConvergenceWarning.
    network = MLPClassifier(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=1000, random_state=0)
    network.fit(x, y)
    with pytest.raises(ConfigurationError, match="solver='adam' or 'sgd'"):
        continue_fit(network, x, y)
    with pytest.raises(ConfigurationError, match="train it from scratch"):
        continue_fit(SVC().fit(x, y), x, y)
