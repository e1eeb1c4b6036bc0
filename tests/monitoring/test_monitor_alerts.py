"""The monitor's alerts on a generated stream: error rate, latency, regression quality,
score drift against a canary and against the reference -- each as a record on
``<service>.alerts`` and, where the monitor exports one, a Prometheus gauge."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from sklearn.metrics import mean_absolute_error, mean_squared_error

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.records import OutRecord
from modelstream.monitoring.alerts import Alert, AlertKind, decode_alert
from modelstream.monitoring.config import MonitorConfig
from modelstream.monitoring.monitor import Monitor
from modelstream.monitoring.snapshot import ModelSnapshot, MonitorSnapshot
from modelstream.settings import Settings
from modelstream.wire.labels import Label
from modelstream.wire.requests import InferenceRequest
from modelstream.wire.scores import Score
from modelstream.wire.tensors import Tensor

T0 = 1_767_225_600_000
N = 600
WINDOW = 200  # the window is the last 200 requests; the reference the first 200
SHIFT_AT = 300
CONFIG = MonitorConfig(
    window_ms=None,
    window_count=WINDOW,
    reference_size=WINDOW,
    min_labels=30,
    min_drift_samples=100,
    evaluate_every=100,
    max_latency_p99_ms=20.0,
)


ROLES = {"reg": "champion", "can": "canary", "flaky": "challenger", "steady": "challenger"}


def _value(rid: str, model: str, value: float | None, at: int, latency: float = 1.0) -> Score:
    outputs = None if value is None else (Tensor("value", "FP64", (1,), (value,)),)
    error = "model raised: boom" if value is None else None
    return Score(rid, model, 1, outputs, error, latency, at + 2, role=ROLES[model])


@dataclass(frozen=True)
class Run:
    snapshot: MonitorSnapshot
    alerts: list[Alert]
    registry: CollectorRegistry
    y: np.ndarray  # labels, by request index
    reg: np.ndarray  # the champion's predictions
    failed: np.ndarray  # whether flaky@1 failed the request

    def model(self, ref: str) -> ModelSnapshot:
        found = self.snapshot.model(ref)
        assert found is not None, f"{ref} not in the snapshot"
        return found

    def alerted(self, kind: AlertKind, model: str, metric: str) -> list[Alert]:
        return [a for a in self.alerts if (a.kind, a.model, a.metric) == (kind, model, metric)]


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    """600 requests, one a second, with numeric labels and four models:

    * ``reg@1``, the champion regressor: close to the label for the first half, then
      noisy (its MAE rises), while the labels (and so its predictions) shift up by 6;
    * ``can@1``, a canary whose predictions are the champion's plus 20;
    * ``flaky@1``, a challenger failing ~30% of requests, and slow (50 ms) when it does;
      when it answers, it answers as the canary does;
    * ``steady@1``, a challenger whose predictions never move (N(10, 3) throughout).
    """
    settings = Settings(backplane="memory://")
    bp = open_backplane("memory://", settings)
    rng = np.random.default_rng(7)
    shifted = np.arange(N) >= SHIFT_AT
    y = rng.normal(10, 3, N) + np.where(shifted, 6.0, 0.0)
    reg = y + rng.normal(0, 1, N) * np.where(shifted, 5.0, 0.3)
    failed = rng.random(N) < 0.3
    steady = rng.normal(10, 3, N)
    requests, scores, labels = [], [], []
    for i in range(N):
        rid, at = f"r{i}", T0 + i * 1000
        x = Tensor("x", "FP32", (1, 1), (float(y[i]),))
        requests.append(InferenceRequest(rid, "svc", at, at + 100, (x,)))
        flaky = (None, 50.0) if failed[i] else (float(reg[i]) + 20, 1.0)
        scores += [
            _value(rid, "reg", float(reg[i]), at),
            _value(rid, "can", float(reg[i]) + 20, at),
            _value(rid, "flaky", flaky[0], at, flaky[1]),
            _value(rid, "steady", float(steady[i]), at),
        ]
        labels.append(Label("svc", float(y[i]), at + 500, request_id=rid))
    bp.produce("svc.requests", [OutRecord(r.encode(), r.key, (), r.event_time) for r in requests])
    bp.produce("svc.scores", [OutRecord(s.encode(), s.request_id.encode()) for s in scores])
    bp.produce("svc.labels", [OutRecord(lb.encode(), lb.key) for lb in labels])
    registry = CollectorRegistry()
    monitor = Monitor(bp, settings, "svc", config=CONFIG, registry=registry).open()
    try:
        assert monitor.catch_up(20)
        snapshot = monitor.evaluate()
    finally:
        monitor.stop()
    consumer = bp.consumer(["svc.alerts"], start="earliest")
    alerts = [decode_alert(r.value) for r in consumer.poll(1000, timeout=1.0)]
    consumer.close()
    bp.close()
    yield Run(snapshot, alerts, registry, y, reg, failed)


def _in_window(values: np.ndarray) -> np.ndarray:
    return values[N - WINDOW :]


def test_error_rate_is_measured_alerted_and_exported(run: Run) -> None:
    flaky = run.model("flaky@1")
    expected = float(_in_window(run.failed).mean())
    assert flaky.scored == WINDOW and flaky.error_rate == pytest.approx(expected)
    assert 0.23 < expected < 0.37  # ~30% of the window failed
    [alert] = run.alerted(AlertKind.ERROR_RATE, "flaky@1", "error_rate")
    assert alert.threshold == CONFIG.max_error_rate and alert.value > CONFIG.max_error_rate
    gauge = run.registry.get_sample_value(
        "modelstream_monitor_error_rate", {"service": "svc", "model": "flaky@1"}
    )
    assert gauge == pytest.approx(expected)
    # Models that never fail: a zero rate and no alert.
    assert run.model("reg@1").error_rate == 0.0
    assert not run.alerted(AlertKind.ERROR_RATE, "reg@1", "error_rate")


def test_a_slow_model_raises_a_latency_alert(run: Run) -> None:
    flaky = run.model("flaky@1")
    assert flaky.latency_p99_ms == pytest.approx(50.0)
    [alert] = run.alerted(AlertKind.LATENCY, "flaky@1", "latency_p99_ms")
    assert alert.value == pytest.approx(50.0) and alert.threshold == CONFIG.max_latency_p99_ms
    assert not [a for a in run.alerts if a.kind is AlertKind.LATENCY and a.model != "flaky@1"]


def test_regression_quality_is_sklearns_mae_and_rmse_and_its_drop_alerts(run: Run) -> None:
    reg = run.model("reg@1")
    y, p = _in_window(run.y), _in_window(run.reg)
    assert reg.task == "regression" and reg.primary == "mae" and reg.labelled == WINDOW
    assert reg.quality["mae"] == pytest.approx(mean_absolute_error(y, p))
    assert reg.quality["rmse"] == pytest.approx(float(np.sqrt(mean_squared_error(y, p))))
    # The baseline is the MAE of the first window (no descriptor metric here).
    first_y, first_p = run.y[:WINDOW], run.reg[:WINDOW]
    assert reg.baseline == pytest.approx(mean_absolute_error(first_y, first_p))
    assert reg.quality["mae"] > reg.baseline * (1 + CONFIG.max_quality_drop)
    # Alerted when the drop began (an earlier evaluation, so its numbers are older).
    [alert] = run.alerted(AlertKind.QUALITY_DROP, "reg@1", "mae")
    assert alert.value > alert.threshold
    gauge = run.registry.get_sample_value(
        "modelstream_monitor_quality", {"service": "svc", "model": "reg@1", "metric": "rmse"}
    )
    assert gauge == pytest.approx(reg.quality["rmse"])


def test_scores_shifted_from_the_canarys_drift_against_it(run: Run) -> None:
    drift = {d.against: d for d in run.model("reg@1").score_drift}
    versus = drift["canary:can@1"]
    assert versus.measure.drifted and versus.measure.psi > CONFIG.psi_threshold
    assert run.alerted(AlertKind.SCORE_DRIFT, "reg@1", "psi:canary:can@1")
    # flaky@1 answers as the canary does when it answers: no drift, no alert.
    same = {d.against: d for d in run.model("flaky@1").score_drift}["canary:can@1"]
    assert not same.measure.drifted
    assert not run.alerted(AlertKind.SCORE_DRIFT, "flaky@1", "psi:canary:can@1")
    # A canary is not compared with itself.
    assert all(d.against == "reference" for d in run.model("can@1").score_drift)


def test_a_shifted_score_stream_drifts_against_its_reference(run: Run) -> None:
    own = {d.against: d for d in run.model("reg@1").score_drift}["reference"]
    assert own.reference_source == "first-window" and own.measure.drifted
    assert own.measure.n_reference == WINDOW and own.measure.n_current == WINDOW
    assert run.alerted(AlertKind.SCORE_DRIFT, "reg@1", "psi:reference")
    steady = {d.against: d for d in run.model("steady@1").score_drift}["reference"]
    assert not steady.measure.drifted
    assert not run.alerted(AlertKind.SCORE_DRIFT, "steady@1", "psi:reference")
