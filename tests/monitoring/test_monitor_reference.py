"""Drift against a model's *training* reference: the descriptor's ``monitoring.reference``
tag and lineage metrics, read by the monitor from the models topic."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord
from modelstream.models.descriptor import Lineage
from modelstream.models.registry import Registry
from modelstream.monitoring.alerts import AlertKind, decode_alert
from modelstream.monitoring.config import MonitorConfig
from modelstream.monitoring.monitor import Monitor
from modelstream.monitoring.references import REFERENCE_TAG, reference_tag
from modelstream.monitoring.snapshot import MonitorSnapshot
from modelstream.settings import Settings
from modelstream.testing.sklearn import to_onnx
from modelstream.wire.labels import Label
from modelstream.wire.requests import InferenceRequest
from modelstream.wire.scores import Score
from modelstream.wire.tensors import Tensor

T0 = 1_767_225_600_000
CONFIG = MonitorConfig(window_ms=None, window_count=300, reference_size=300, evaluate_every=100)
BASELINE = 0.93  # the holdout accuracy the trainer measured


def _serve_shifted(bp: Backplane, service: str, model: LogisticRegression) -> None:
    """400 requests whose input x ~ N(2, 1) (trained on N(0, 1)), the model's real
    scores, and labels that disagree with it 30% of the time."""
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 1.0, (400, 1))
    proba = model.predict_proba(x)
    predicted = proba.argmax(axis=1)
    truth = np.where(rng.random(400) < 0.3, 1 - predicted, predicted)
    requests, scores, labels = [], [], []
    for i in range(400):
        rid, at = f"r{i}", T0 + i * 1000
        tensor = Tensor("x", "FP32", (1, 1), (float(x[i, 0]),))
        requests.append(InferenceRequest(rid, service, at, at + 100, (tensor,)))
        outputs = (
            Tensor("label", "INT64", (1,), (int(predicted[i]),)),
            Tensor("probabilities", "FP32", (1, 2), tuple(float(p) for p in proba[i])),
        )
        scores.append(Score(rid, "lr", 1, outputs, None, 1.0, at + 2))
        labels.append(Label(service, int(truth[i]), at + 500, request_id=rid))
    bp.produce(
        f"{service}.requests", [OutRecord(r.encode(), r.key, (), r.event_time) for r in requests]
    )
    bp.produce(f"{service}.scores", [OutRecord(s.encode(), s.request_id.encode()) for s in scores])
    bp.produce(f"{service}.labels", [OutRecord(lb.encode(), lb.key) for lb in labels])


def _monitor(bp: Backplane, settings: Settings, service: str) -> MonitorSnapshot:
    monitor = Monitor(bp, settings, service, config=CONFIG).open()
    try:
        assert monitor.catch_up(20)
        return monitor.evaluate()
    finally:
        monitor.stop()


def test_drift_and_quality_are_measured_against_the_descriptors_reference() -> None:
    settings = Settings(backplane="memory://")
    bp = open_backplane("memory://", settings)
    registry = Registry(bp, settings)
    rng = np.random.default_rng(0)
    x_train = rng.normal(0.0, 1.0, (2000, 1))
    y_train = (x_train[:, 0] + rng.normal(0, 0.3, 2000) > 0).astype(np.int64)
    model = LogisticRegression().fit(x_train, y_train)
    data = to_onnx(model, 1)
    tag = reference_tag({"x[0]": x_train[:, 0]}, scores=model.predict_proba(x_train[1500:])[:, 1])
    lineage = Lineage(0, metrics={"holdout_accuracy": BASELINE}, tags={REFERENCE_TAG: tag})
    registry.publish("svc", "lr", data, format="onnx", lineage=lineage)
    registry.publish("plain", "lr", data, format="onnx")  # the same model, no reference
    for service in ("svc", "plain"):
        _serve_shifted(bp, service, model)
    try:
        snap, plain = _monitor(bp, settings, "svc"), _monitor(bp, settings, "plain")
        consumer = bp.consumer(["svc.alerts"], start="earliest")
        alerts = {
            (a.kind, a.metric)
            for a in map(decode_alert, (r.value for r in consumer.poll(1000, timeout=1.0)))
        }
        consumer.close()
    finally:
        bp.close()
    [inputs] = snap.input_drift
    assert inputs.subject == "x[0]" and inputs.reference_source == "descriptor:lr@1"
    assert inputs.measure.drifted and inputs.measure.n_reference == 500  # the tag's sample
    lr = snap.model("lr@1")
    assert lr is not None
    own = next(d for d in lr.score_drift if d.against == "reference")
    assert own.reference_source == "descriptor:lr@1" and own.measure.drifted
    assert own.measure.n_reference == 500
    assert lr.baseline == BASELINE and lr.quality["accuracy"] < BASELINE - 0.1
    assert {
        (AlertKind.INPUT_DRIFT, "psi:x[0]"),
        (AlertKind.SCORE_DRIFT, "psi:reference"),
        (AlertKind.QUALITY_DROP, "accuracy"),
    } <= alerts
    # The same traffic without the tag is compared with its own first window: the
    # shift, present from the start, is invisible -- the tag is what shows it.
    [first] = plain.input_drift
    assert first.reference_source == "first-window" and not first.measure.drifted
    plain_lr = plain.model("lr@1")
    assert plain_lr is not None and plain_lr.baseline == pytest.approx(
        plain_lr.quality["accuracy"], abs=0.1
    )
