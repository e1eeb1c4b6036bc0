"""Periodic retraining end to end: real records, the real archiver, SQLite, ONNX."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelstream.backplane.records import OutRecord
from modelstream.errors import ConfigurationError
from modelstream.models.deployment import Role
from modelstream.models.formats import load_verified
from modelstream.models.refs import ModelRef
from modelstream.models.store import fetch_bytes
from modelstream.monitoring.references import reference_of
from modelstream.scoring.events import decode_model_event
from modelstream.training.config import TrainerConfig
from modelstream.training.trainer import Trainer
from modelstream.wire.labels import Label

from .helpers import SERVICE, T0, World, archive, concept, traffic, world

pytestmark = pytest.mark.integration

FN = "tests.training.functions"


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    w = world(tmp_path)
    x, y = concept(400, seed=1)
    traffic(w, x, y)
    archive(w)
    yield w
    w.close()


def events(w: World) -> list[object]:
    consumer = w.backplane.consumer([f"{SERVICE}.model-events"], start="earliest")
    try:
        return [decode_model_event(r.value) for r in consumer.poll(1000, timeout=2.0)]
    finally:
        consumer.close()


def test_a_cycle_publishes_a_version_with_its_lineage(w: World) -> None:
    config = TrainerConfig(f"{FN}:train_logreg", margin=0.05, feature_set="fs-1")
    with Trainer(w.backplane, w.settings, SERVICE, config) as trainer:
        result = trainer.run_once()
    d = result.published
    assert d is not None and d.ref == ModelRef("lr", 2) and d.format == "onnx"
    lineage = d.lineage
    assert lineage.created_by == "trainer" and lineage.feature_set == "fs-1"
    # 400 labelled rows, the last 20% held out: trained on the first 320 by event time.
    assert lineage.training.rows == 320
    assert lineage.training.start == T0 and lineage.training.end == T0 + 319 * 60_000
    assert lineage.parent_version == 1  # a new version of the champion's name
    assert lineage.tags["champion"] == "lr@1" and lineage.tags["warm_start"] == "false"
    assert lineage.metrics["holdout_rows"] == 80
    assert lineage.metrics["holdout_accuracy"] > 0.8
    assert (
        abs(lineage.metrics["holdout_accuracy"] - lineage.metrics["champion_holdout_accuracy"])
        < 0.1
    )
    assert result.evaluation is not None and result.evaluation.champion_source == "archive"
    # The published bytes load as a scorer would load them, and answer.
    deployment = w.registry.deployment(SERVICE)
    model = load_verified(d, fetch_bytes(d), deployment)
    assert model.schema.inputs[0].name == "input" and model.schema.inputs[0].shape == (-1, 4)
    x, _ = concept(400, seed=1)
    holdout_p1 = model.predict({"input": x[320:]})["probabilities"][:, 1]
    model.close()
    # The monitor's training reference: the training rows' inputs, named as the monitor
    # names the requests' tensor "input", and the model's own P(class 1) on the holdout.
    reference = reference_of(d)
    assert sorted(reference.inputs) == ["input[0]", "input[1]", "input[2]", "input[3]"]
    for i in range(4):
        assert reference.inputs[f"input[{i}]"] == pytest.approx(x[:320, i], rel=1e-5)
    assert reference.scores == pytest.approx(holdout_p1, rel=1e-5, abs=1e-6)
    assert reference.metrics == {"accuracy": lineage.metrics["holdout_accuracy"]}
    published = [e for e in events(w) if e.event == "retrain_published"]  # type: ignore[attr-defined]
    assert [(e.model, e.version) for e in published] == [("lr", 2)]  # type: ignore[attr-defined]


def test_a_retrained_model_of_a_featurized_service_names_its_feature_set(w: World) -> None:
    # the trainer role's config names no feature set; the deployment does (a reference)
    w.registry.deploy(SERVICE, ModelRef("lr", 1), feature_set="tests.features.sample_set:TRUCKS")
    config = TrainerConfig(f"{FN}:train_logreg", margin=0.05)
    with Trainer(w.backplane, w.settings, SERVICE, config) as trainer:
        result = trainer.run_once()
    assert result.published is not None
    assert result.published.lineage.feature_set == "trucks@1"  # name@version, not the path


def test_second_cycle_names_its_parent_and_deploys_as_challenger(w: World) -> None:
    config = TrainerConfig(
        f"{FN}:train_logreg", margin=0.05, deploy_as_challenger=True, champion_scores="rescore"
    )
    with Trainer(w.backplane, w.settings, SERVICE, config) as trainer:
        first, second = trainer.run_once(), trainer.run_once()
    assert first.published is not None and second.published is not None
    assert first.published.ref == ModelRef("lr", 2)
    assert second.published.lineage.parent_version == 2
    assert second.evaluation is not None and second.evaluation.champion_source == "rescore"
    live = {m.ref: m.role for m in w.registry.deployment(SERVICE).models}
    # Beside the champion (its own lane); the second version replaced the first challenger.
    assert live == {ModelRef("lr", 1): Role.CHAMPION, ModelRef("lr", 3): Role.CHALLENGER}


def test_a_worse_model_is_not_published_and_the_reason_is_recorded(w: World) -> None:
    config = TrainerConfig(f"{FN}:train_noise", margin=0.05)
    with Trainer(w.backplane, w.settings, SERVICE, config) as trainer:
        result = trainer.run_once()
    assert result.published is None
    assert "worse than the margin" in result.reason
    assert [d.name for d in w.registry.descriptors(SERVICE)] == ["lr"]
    rejected = [e for e in events(w) if e.event == "retrain_rejected"]  # type: ignore[attr-defined]
    assert len(rejected) == 1 and "accuracy" in rejected[0].error  # type: ignore[attr-defined]


def test_every_n_labels_triggers_a_cycle(w: World) -> None:
    config = TrainerConfig(f"{FN}:train_logreg", margin=0.05, every_labels=450)
    with Trainer(w.backplane, w.settings, SERVICE, config) as trainer:
        assert trainer.step(timeout=1.0) is None  # 400 labels so far
        corrections = [Label(SERVICE, 1, T0 + 10**9 + i, request_id=f"r{i}") for i in range(60)]
        w.backplane.produce(
            f"{SERVICE}.labels", [OutRecord(lb.encode(), lb.key) for lb in corrections]
        )
        result = trainer.step(timeout=1.0)
        assert result is not None and result.published is not None
        assert trainer.count_labels(timeout=0.2) == 0 and trainer.step(timeout=0.2) is None


def test_a_bad_function_path_is_a_clear_configuration_error(w: World) -> None:
    cases = {
        "no_colon": "module:function",
        "no_such_module_xyz:train": "does not import",
        f"{FN}:missing": "has no 'missing'",
        f"{FN}:not_callable": "not a function",
    }
    for spec, text in cases.items():
        with pytest.raises(ConfigurationError, match=text):
            Trainer(w.backplane, w.settings, SERVICE, TrainerConfig(spec))
    with pytest.raises(ConfigurationError, match="not a fitted"):
        Trainer(w.backplane, w.settings, SERVICE, TrainerConfig(f"{FN}:returns_nothing")).run_once()
    with pytest.raises(ConfigurationError, match="accepts `parent`"):
        Trainer(
            w.backplane, w.settings, SERVICE, TrainerConfig(f"{FN}:train_logreg", warm_start=True)
        )


def test_after_a_promotion_the_next_version_replaces_the_demoted_champion(w: World) -> None:
    config = TrainerConfig(f"{FN}:train_logreg", margin=0.05, deploy_as_challenger=True)
    with Trainer(w.backplane, w.settings, SERVICE, config) as trainer:
        first = trainer.run_once()
        assert first.published is not None and first.deployed
        w.registry.promote(SERVICE, first.published.ref, reason="test: promote lr@2")
        demoted = {m.ref: m.role for m in w.registry.deployment(SERVICE).models}
        assert demoted == {ModelRef("lr", 2): Role.CHAMPION, ModelRef("lr", 1): Role.CHALLENGER}
        second = trainer.run_once()
    assert second.published is not None and second.published.lineage.parent_version == 2
    live = {m.ref: m.role for m in w.registry.deployment(SERVICE).models}
    assert live == {ModelRef("lr", 2): Role.CHAMPION, ModelRef("lr", 3): Role.CHALLENGER}
    assert w.registry.deployment(SERVICE).reason == (
        "trainer: lr@3 as a challenger beside champion lr@2"
    )
