"""The monitor on the memory backplane: joins, windows, alerts' debouncing, quality policy."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord
from modelstream.clock import ManualClock
from modelstream.models.deployment import Deployment, LiveModel, Policy, PolicyKind, Role
from modelstream.models.refs import ModelRef
from modelstream.monitoring.alerts import Alert, Alerter, AlertKind, Finding
from modelstream.monitoring.config import MonitorConfig
from modelstream.monitoring.joiner import Joiner, Labelled, Scored
from modelstream.monitoring.monitor import Monitor
from modelstream.monitoring.quality import MonitorQuality
from modelstream.rendezvous.mailbox import Mailbox
from modelstream.rendezvous.policies import QualityPolicy
from modelstream.settings import Settings
from modelstream.wire.labels import Label
from modelstream.wire.requests import InferenceRequest
from modelstream.wire.scores import Score
from modelstream.wire.tensors import Tensor
from tests.archive.helpers import T0, Traffic, produce, traffic

CONFIG = MonitorConfig(window_ms=None, window_count=500, min_labels=30, evaluate_every=100)


@pytest.fixture
def backplane() -> Backplane:
    settings = Settings(backplane="memory://")
    bp = open_backplane("memory://", settings)
    yield bp  # type: ignore[misc]
    bp.close()


def _monitor(bp: Backplane, **kw: object) -> Monitor:
    return Monitor(bp, Settings(backplane="memory://"), "svc", config=CONFIG, **kw)  # type: ignore[arg-type]


def _without_labels(t: Traffic) -> Traffic:
    return Traffic(t.requests, t.scores, t.results, [])


def test_quality_latency_chosen_and_agreement_per_model(backplane: Backplane) -> None:
    produce(backplane, "svc", traffic("svc", 300, accuracy=(0.92, 0.6)))
    registry = CollectorRegistry()
    monitor = _monitor(backplane, registry=registry).open()
    try:
        assert monitor.catch_up(20)
        snap = monitor.snapshot()
    finally:
        monitor.stop()
    gbm, lr = snap.model("gbm@1"), snap.model("lr@1")
    assert gbm is not None and lr is not None
    assert gbm.task == "classification" and gbm.labelled == 300
    assert 0.87 < gbm.quality["accuracy"] < 0.97 and 0.5 < lr.quality["accuracy"] < 0.7
    assert gbm.quality["roc_auc"] > lr.quality["roc_auc"] and "log_loss" in gbm.quality
    assert gbm.chosen_share == 1.0 and lr.chosen_share == 0.0
    assert gbm.latency_p50_ms is not None and lr.latency_p99_ms is not None
    assert gbm.latency_p50_ms < lr.latency_p50_ms  # lr's latencies are drawn 3x longer
    assert gbm.error_rate == 0.0
    pair = snap.agreement_of("gbm@1", "lr@1")
    assert pair is not None and pair.n == 300 and 0.4 < pair.agreement < 0.75
    as_json = snap.to_json()
    assert as_json["models"][0]["model"] == "gbm@1" and as_json["records"]["labels"] == 300
    text = generate_latest(registry).decode()
    assert 'modelstream_monitor_quality{metric="accuracy",model="gbm@1",service="svc"}' in text
    assert "modelstream_monitor_chosen_share" in text and "modelstream_monitor_agreement" in text


def test_quality_policy_picks_the_better_model_once_labels_exist(backplane: Backplane) -> None:
    # lr is the champion (preferred), gbm a better challenger.
    deployment = Deployment(
        "svc",
        (
            LiveModel(ModelRef("lr", 1), Role.CHAMPION),
            LiveModel(ModelRef("gbm", 1), Role.CHALLENGER),
        ),
        policy=Policy(kind=PolicyKind.QUALITY),
    )
    t = traffic("svc", 200, accuracy=(0.92, 0.6))
    request = t.requests[0]
    mailbox = Mailbox(request, request.event_time)
    for score in t.scores[:2]:
        mailbox.add(score, request.event_time + 1)

    produce(backplane, "svc", _without_labels(t))
    monitor = _monitor(backplane).open()
    try:
        policy = QualityPolicy(MonitorQuality([monitor]))
        assert monitor.catch_up(20)
        assert monitor.quality("gbm@1") is None  # no labels: no measurement
        unlabelled = policy.decide(mailbox, deployment, request.deadline)
        assert unlabelled is not None and unlabelled.model == ModelRef("lr", 1)

        backplane.produce("svc.labels", [OutRecord(lb.encode(), lb.key) for lb in t.labels])
        assert monitor.catch_up(20)
        assert monitor.quality("gbm@1") > monitor.quality("lr@1")  # type: ignore[operator]
        assert policy.order(deployment) == ("gbm@1", "lr@1")
        decision = policy.decide(mailbox, deployment, request.deadline)
        assert decision is not None and decision.model == ModelRef("gbm", 1)
        assert policy.source.quality("other", ModelRef("gbm", 1)) is None
    finally:
        monitor.stop()


def test_undecodable_records_are_dead_lettered(backplane: Backplane) -> None:
    produce(backplane, "svc", traffic("svc", 10))
    backplane.produce("svc.scores", [OutRecord(b"not json", b"x")])
    backplane.produce("svc.labels", [OutRecord(b'{"service": "svc"}', b"y")])
    monitor = _monitor(backplane).open()
    try:
        assert monitor.catch_up(20)
        assert monitor.snapshot().records["dead_lettered"] == 2
    finally:
        monitor.stop()
    consumer = backplane.consumer(["svc.dead-letter"])
    try:
        reasons = [r.header("x-reason") for r in consumer.poll(10, timeout=1.0)]
    finally:
        consumer.close()
    assert len(reasons) == 2 and all(reasons)


def _score(rid: str, model: str, pred: int) -> Score:
    outputs = (Tensor("label", "INT64", (1,), (pred,)),)
    return Score(rid, model, 1, outputs, None, 1.0, T0)


def _request(rid: str, at: int, entity: str | None = None) -> InferenceRequest:
    return InferenceRequest(
        rid, "svc", at, at + 50, (Tensor("x", "FP32", (1, 1), (1.0,)),), entity=entity
    )


def test_joiner_takes_labels_before_or_after_scores_by_id_or_entity() -> None:
    joiner = Joiner(retention_ms=10_000, max_pending=100)
    # Label by id first, then the request and a score: joined when the score comes.
    assert joiner.on_label(Label("svc", 1, T0, request_id="r1")) == []
    joiner.on_request(_request("r1", T0))
    out = joiner.on_score(_score("r1", "a", 1), T0)
    assert [type(o) for o in out] == [Scored, Labelled]
    assert isinstance(out[1], Labelled) and out[1].label == 1 and out[1].event_time == T0
    # A redelivered score is ignored.
    assert joiner.on_score(_score("r1", "a", 1), T0) == []
    # A second model's score sees the first as a peer and is joined with the label.
    second = joiner.on_score(_score("r1", "b", 0), T0)
    assert isinstance(second[0], Scored) and [p.ref for p in second[0].peers] == ["a@1"]
    # Label by entity and event time, after the scores.
    joiner.on_request(_request("r2", T0 + 5, entity="truck-7"))
    joiner.on_score(_score("r2", "a", 0), T0 + 5)
    late = joiner.on_label(Label("svc", 0, T0 + 9, entity="truck-7", event_time=T0 + 5))
    assert [(o.view.ref, o.label) for o in late if isinstance(o, Labelled)] == [("a@1", 0)]
    # ... and before the request.
    assert joiner.on_label(Label("svc", 1, T0, entity="truck-8", event_time=T0 + 6)) == []
    joiner.on_request(_request("r3", T0 + 6, entity="truck-8"))
    assert isinstance(joiner.on_score(_score("r3", "a", 1), T0)[-1], Labelled)


def test_joiner_state_is_bounded() -> None:
    joiner = Joiner(retention_ms=1_000, max_pending=50)
    for i in range(200):
        joiner.on_request(_request(f"r{i}", T0 + i * 100))
        joiner.expire()
    assert len(joiner) <= 11  # 1 s of event time at 100 ms apart
    capped = Joiner(retention_ms=10**9, max_pending=50)
    for i in range(200):
        capped.on_request(_request(f"r{i}", T0 + i))
    capped.expire()
    assert len(capped) == 50


def test_alerts_are_debounced() -> None:
    clock = ManualClock()
    sent: list[Alert] = []
    alerter = Alerter("svc", {"ms": 1, "count": None}, clock, realert_ms=60_000, sink=sent.append)
    finding = Finding(AlertKind.ERROR_RATE, "a@1", "error_rate", 0.2, 0.05, "too many errors")
    assert alerter.condition(True, finding) is not None
    for _ in range(10):  # persisting: alerted once
        clock.advance(1_000)
        assert alerter.condition(True, finding) is None
    clock.advance(60_000)  # still true a realert period later: once more
    assert alerter.condition(True, finding) is not None
    alerter.condition(False, finding)  # cleared: the next occurrence alerts at once
    assert alerter.condition(True, finding) is not None
    assert len(sent) == 3 and sent[0].to_json()["kind"] == "error_rate"
    drift = Finding(AlertKind.ERROR_DRIFT, "a@1", "loss", 0.5, 0.1, "error rose")
    assert alerter.event(drift) is not None and alerter.event(drift) is None


def test_serving_shows_the_monitor_metrics_on_the_gateway_registry(backplane: Backplane) -> None:
    from modelstream.gateway.serving import Serving

    produce(backplane, "svc", traffic("svc", 60, step_ms=1_000))
    serving = Serving(
        backplane, Settings(backplane="memory://"), ["svc"], gateway=False, rendezvous=False,
        scorers=False, monitor=True, archiver=False,
    )  # fmt: skip
    monitor = serving.monitors[0]
    try:
        assert monitor.catch_up(20)
    finally:
        serving.stop()
    text = serving.metrics.render().decode()
    assert 'modelstream_monitor_quality{metric="accuracy",model="gbm@1",service="svc"}' in text


def test_descriptor_reference_tag_and_baseline_metrics() -> None:
    from modelstream.models.descriptor import Lineage, ModelDescriptor
    from modelstream.models.schema import ModelSchema
    from modelstream.monitoring.references import REFERENCE_TAG, reference_of, reference_tag

    tag = reference_tag({"x[0]": [0.0, 1.0, float("nan")]}, scores=[0.2, 0.8])
    lineage = Lineage(0, metrics={"accuracy": 0.91, "f1": 0.5}, tags={REFERENCE_TAG: tag})
    descriptor = ModelDescriptor("svc", "lr", 1, "onnx", "0" * 64, ModelSchema((), ()), lineage)
    found = reference_of(descriptor)
    assert found.inputs == {"x[0]": [0.0, 1.0]} and found.scores == [0.2, 0.8]
    assert found.metrics == {"accuracy": 0.91}
    broken = Lineage(0, tags={REFERENCE_TAG: "{not json"})
    empty = reference_of(
        ModelDescriptor("svc", "lr", 2, "onnx", "0" * 64, ModelSchema((), ()), broken)
    )
    assert empty.inputs == {} and empty.scores is None


def test_references_set_by_api_replace_the_first_window(backplane: Backplane) -> None:
    produce(backplane, "svc", traffic("svc", 200, step_ms=1_000))
    monitor = _monitor(backplane).open()
    try:
        # Every request's x[0] is its index 0..199; a reference far away drifts.
        monitor.set_reference("x[0]", [float(v) for v in range(1000, 1200)])
        monitor.set_score_reference("gbm@1", [0.5] * 150)
        assert monitor.catch_up(20)
        snap = monitor.snapshot()
    finally:
        monitor.stop()
    drift = {d.subject: d for d in snap.input_drift}
    assert drift["x[0]"].reference_source == "api" and drift["x[0]"].measure.drifted
    gbm = snap.model("gbm@1")
    assert gbm is not None
    own = next(d for d in gbm.score_drift if d.against == "reference")
    assert own.reference_source == "api" and own.measure.n_reference == 150
