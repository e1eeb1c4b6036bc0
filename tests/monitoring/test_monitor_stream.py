"""The monitor over a generated stream whose concept changes mid-way (SQLite, real ONNX).

Three real ONNX classifiers score every request: the champion ``lr@1`` (logistic
regression), a challenger ``tree@1`` and a canary ``lr2@1`` (the same bytes as the
champion). After request ``CHANGE`` the labels flip (the concept changes) and input
``x[0]`` shifts by +3 (its distribution changes); ``x[1..3]`` do not change.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from typer.testing import CliRunner

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord
from modelstream.cli.app import app
from modelstream.monitoring.alerts import decode_alert
from modelstream.monitoring.config import MonitorConfig
from modelstream.monitoring.monitor import Monitor
from modelstream.settings import Settings
from modelstream.testing.sklearn import Dataset, fit, make_dataset, to_onnx
from modelstream.wire.labels import Label
from modelstream.wire.requests import InferenceRequest
from modelstream.wire.results import Result
from modelstream.wire.scores import Score
from modelstream.wire.tensors import Tensor

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000
N, CHANGE, STEP_MS = 1200, 600, 1_000
CONFIG = MonitorConfig(
    window_ms=300_000,  # the last 5 minutes of event time: 300 requests
    window_count=300,
    reference_size=300,
    min_labels=50,
    min_drift_samples=100,
    evaluate_every=300,
)
MODELS = (("lr", "champion"), ("tree", "challenger"), ("lr2", "canary"))


def _sessions() -> tuple[Dataset, dict[str, ort.InferenceSession]]:
    data = make_dataset(rows=1500 + N, features=4, seed=3)
    train = Dataset(data.x[:1500], data.y[:1500])
    lr = to_onnx(fit("logreg", train), 4)
    tree = to_onnx(fit("tree", train), 4)
    sessions = {
        name: ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
        for name, blob in (("lr", lr), ("tree", tree), ("lr2", lr))
    }
    return Dataset(data.x[1500:], data.y[1500:]), sessions


def _stream(bp: Backplane, service: str) -> None:
    """Requests, every model's real ONNX scores, the champion's answers, late labels."""
    stream, sessions = _sessions()
    x = stream.x.copy()
    x[CHANGE:, 0] += 3.0  # input drift of x[0] after the change
    y = stream.y.copy()
    y[CHANGE:] = 1 - y[CHANGE:]  # concept change: the labels flip
    outputs = {name: s.run(None, {"input": x}) for name, s in sessions.items()}
    rng = np.random.default_rng(0)
    requests, scores, results, labels = [], [], [], []
    for i in range(N):
        rid, at = f"r{i}", T0 + i * STEP_MS
        entity = f"e{i}"
        tensor = Tensor("x", "FP32", (1, 4), tuple(float(v) for v in x[i]))
        requests.append(InferenceRequest(rid, service, at, at + 50, (tensor,), entity=entity))
        for name, role in MODELS:
            label_out, proba = outputs[name]
            out = (
                Tensor("label", "INT64", (1,), (int(label_out[i]),)),
                Tensor("probabilities", "FP32", (1, 2), tuple(float(p) for p in proba[i])),
            )
            latency = float(rng.gamma(2.0, 0.2))
            scores.append(Score(rid, name, 1, out, None, latency, at + 2, role=role))
        champion = scores[-3]
        results.append(
            Result(rid, service, "preference", champion.outputs, at + 50, at + 3, "lr", 1)
        )
        truth = int(y[i])
        # Most labels name the request; every 10th comes by entity and event time.
        if i % 10 == 0:
            labels.append(Label(service, truth, at + 60_000, entity=entity, event_time=at))
        else:
            labels.append(Label(service, truth, at + 60_000, request_id=rid))
    bp.produce(
        f"{service}.requests", [OutRecord(r.encode(), r.key, (), r.event_time) for r in requests]
    )
    bp.produce(f"{service}.scores", [OutRecord(s.encode(), s.request_id.encode()) for s in scores])
    bp.produce(
        f"{service}.results", [OutRecord(r.encode(), r.request_id.encode()) for r in results]
    )
    bp.produce(f"{service}.labels", [OutRecord(lb.encode(), lb.key) for lb in labels])


@pytest.fixture(scope="module")
def stream_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    root: Path = tmp_path_factory.mktemp("monitor")
    url = f"sqlite://{root}"
    bp = open_backplane(url, Settings(backplane=url))
    try:
        for topic in ("requests", "scores", "results", "labels"):
            bp.create_topic(f"svc.{topic}", 2)
        _stream(bp, "svc")
    finally:
        bp.close()
    return url


def test_monitor_sees_the_concept_change(stream_url: str) -> None:
    settings = Settings(backplane=stream_url)
    bp = open_backplane(stream_url, settings)
    registry = CollectorRegistry()
    try:
        monitor = Monitor(bp, settings, "svc", config=CONFIG, registry=registry).open()
        try:
            assert monitor.catch_up(45)
            snap = monitor.snapshot()
        finally:
            monitor.stop()
        consumer = bp.consumer(["svc.alerts"])
        try:
            alerts = [decode_alert(r.value) for r in consumer.poll(1000, timeout=2.0)]
        finally:
            consumer.close()
    finally:
        bp.close()

    assert snap.records["requests"] == N and snap.records["labels"] == N
    champion = snap.model("lr@1")
    assert champion is not None and champion.labelled == 300
    # Quality after the change against the first window's (the baseline).
    assert champion.baseline is not None and champion.baseline > 0.8
    assert champion.quality["accuracy"] < 0.5
    assert champion.chosen_share == 1.0 and champion.error_rate == 0.0

    kinds = {(a.kind.value, a.model) for a in alerts}
    assert ("quality_drop", "lr@1") in kinds
    assert ("error_drift", "lr@1") in kinds  # River's ADWIN on the streaming error
    drop = next(a for a in alerts if a.kind.value == "quality_drop" and a.model == "lr@1")
    assert drop.value < drop.threshold and drop.window == {"ms": 300_000, "count": 300}

    # Input drift: x[0] shifted, the other columns did not.
    drift = {d.subject: d.measure for d in snap.input_drift}
    assert drift["x[0]"].drifted and drift["x[0]"].psi > 1.0 and drift["x[0]"].ks_p_value < 1e-6
    for column in ("x[1]", "x[2]", "x[3]"):
        assert not drift[column].drifted, (column, drift[column])
        assert drift[column].psi < 0.2
    drifted_inputs = {a.metric for a in alerts if a.kind.value == "input_drift"}
    assert drifted_inputs == {"psi:x[0]"}

    # Identical models agree always; the canary's scores match the champion's exactly.
    same = snap.agreement_of("lr@1", "lr2@1")
    other = snap.agreement_of("lr@1", "tree@1")
    assert same is not None and same.agreement == 1.0 and same.n == 300
    assert other is not None and other.agreement < 1.0
    versus_canary = next(d for d in champion.score_drift if d.against == "canary:lr2@1")
    assert versus_canary.measure.psi == 0.0 and not versus_canary.measure.drifted

    text = generate_latest(registry).decode()
    assert (
        'modelstream_monitor_drift_psi{against="reference",model="",service="svc",subject="x[0]"}'
        in text
    )
    assert (
        'modelstream_monitor_alerts_total{kind="quality_drop",model="lr@1",service="svc"}' in text
    )
    assert 'modelstream_monitor_latency_ms{model="tree@1",quantile="0.99",service="svc"}' in text


def test_monitor_cli_once_json(stream_url: str) -> None:
    out = CliRunner().invoke(
        app,
        ["--backplane", stream_url, "monitor", "svc", "--once", "--json", "--window-minutes", "5",
         "--window-count", "300"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    snap = json.loads(out.stdout)
    assert snap["service"] == "svc" and snap["records"]["requests"] == N
    models = {m["model"]: m for m in snap["models"]}
    assert set(models) == {"lr@1", "tree@1", "lr2@1"}
    assert models["lr@1"]["quality"]["accuracy"] < 0.5 and models["lr@1"]["chosen_share"] == 1.0
    assert {d["subject"] for d in snap["input_drift"] if d["drifted"]} == {"x[0]"}

    table = CliRunner().invoke(app, ["--backplane", stream_url, "monitor", "svc", "--once"])
    assert table.exit_code == 0, table.output
    assert "lr@1" in table.stdout and "agreement" in table.stdout


def test_monitor_cli_live_table_refreshes_until_ctrl_c(
    stream_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``modelstream monitor svc`` (no --once): the Live table over a running monitor,
    refreshed every --refresh seconds, and a clean exit on Ctrl-C."""
    import time
    from types import SimpleNamespace

    from modelstream.cli import monitor as cli_monitor

    naps: list[float] = []

    def sleep(seconds: float) -> None:  # the user presses Ctrl-C after ~1 s
        naps.append(seconds)
        if len(naps) > 4:
            raise KeyboardInterrupt
        time.sleep(seconds)

    monkeypatch.setattr(cli_monitor, "time", SimpleNamespace(sleep=sleep))
    out = CliRunner().invoke(
        app, ["--backplane", stream_url, "monitor", "svc", "--refresh", "0.25"]
    )
    assert out.exit_code == 0, out.output
    assert naps == [0.25] * 5  # four refreshes, then the interrupt
    assert "svc: models" in out.stdout and "lr@1" in out.stdout
    assert "input drift vs reference" in out.stdout and "recent alerts" in out.stdout
