"""The dashboard in a real headless browser, against a real ``Serving`` under load.

Debian's chromium driven by Playwright (never ``playwright install``: the browser is
the system's, ``/usr/bin/chromium``). The stack is the embedded default on SQLite with
real ONNX models, a monitor, HTTP traffic and labels. The page must fill its charts
with live data, list the versions timeline, show quality once labels arrive, log no
console error and load nothing from any host but the gateway's. The screenshot is
saved to ``.ci/artifacts/dashboard.png``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import numpy.typing as npt
import pytest

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord, now_ms
from modelstream.gateway.serving import Serving
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.monitoring.alerts import Alert, AlertKind
from modelstream.settings import Settings
from modelstream.testing.browser import CHROMIUM_ARGS, ensure_chromium
from modelstream.testing.sklearn import onnx_classifier
from modelstream.wire.labels import Label
from modelstream.wire.topics import ServiceTopics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / ".ci" / "artifacts"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass
class Running:
    url: str
    backplane: Backplane
    sent: list[int]


def _traffic(
    url: str,
    backplane: Backplane,
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.int64],
    stop: threading.Event,
    sent: list[int],
) -> None:
    """Requests one at a time (bounded), each labelled with its true class."""
    labels = ServiceTopics("fraud").labels
    with httpx.Client(base_url=url, timeout=10) as client:
        for i in range(20_000):
            if stop.is_set():
                return
            row = i % len(x)
            request_id = f"r{i}"
            body = {
                "id": request_id,
                "inputs": [
                    {
                        "name": "input",
                        "datatype": "FP32",
                        "shape": [1, 4],
                        "data": x[row].tolist(),
                    }
                ],
            }
            client.post("/v2/models/fraud/infer", json=body)
            label = Label("fraud", int(y[row]), now_ms(), request_id=request_id)
            backplane.produce(labels, [OutRecord(label.encode(), label.key)])
            sent[0] += 1
            stop.wait(0.01)  # about 50 requests/s: live, but light on a shared machine


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    directory = tmp_path_factory.mktemp("dashboard")
    settings = Settings(backplane=f"sqlite://{directory}", default_partitions=2)
    backplane = open_backplane(settings.backplane, settings)
    registry = Registry(backplane, settings)
    lr, data = onnx_classifier("logreg", seed=0)
    tree, _ = onnx_classifier("tree", seed=0)
    registry.publish("fraud", "lr", lr, format="onnx")
    registry.publish("fraud", "tree", tree, format="onnx")
    registry.deploy("fraud", ModelRef("lr", 1), challengers=[ModelRef("tree", 1)], deadline_ms=1000)
    registry.promote("fraud", ModelRef("tree", 1), reason="tree wins on recall")
    registry.rollback("fraud", reason="tree p99 too slow")
    topics = ServiceTopics("fraud")
    late = [OutRecord(b'{"late": true}', b"truck-7") for _ in range(3)]
    backplane.produce(topics.late, late)
    alert = Alert(
        "fraud",
        AlertKind.INPUT_DRIFT,
        None,
        "psi:x[0]",
        0.31,
        0.2,
        {"ms": 900_000, "count": 1000},
        "x[0] drifted: PSI 0.310 above 0.200",
        now_ms(),
    )
    backplane.produce(topics.alerts, [OutRecord(alert.encode(), alert.key)])

    serving = Serving(backplane, settings, ["fraud"], host="127.0.0.1", port=0, monitor=True)
    stop = threading.Event()
    sent = [0]
    thread: threading.Thread | None = None
    try:
        serving.start(load_timeout=60)
        assert all(r.wait_until_assigned(10) for r in serving.rendezvous)
        assert serving.server is not None
        url = serving.server.url
        thread = threading.Thread(
            target=_traffic, args=(url, backplane, data.x, data.y, stop, sent), daemon=True
        )
        thread.start()
        yield Running(url, backplane, sent)
    finally:
        stop.set()
        if thread is not None:
            thread.join(30)
        serving.stop()
        backplane.close()


def test_the_dashboard_shows_live_traffic_in_a_real_browser(
    running: Running, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    console_errors: list[str] = []
    foreign: list[str] = []

    def on_request(url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme in {"http", "https", "ws", "wss"} and parsed.hostname not in LOOPBACK:
            foreign.append(url)

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=ensure_chromium(),
            headless=True,
            args=list(CHROMIUM_ARGS),
            viewport={"width": 1440, "height": 1000},
        )
        try:
            page = context.new_page()
            page.on(
                "console",
                lambda m: console_errors.append(m.text) if m.type == "error" else None,
            )
            page.on("pageerror", lambda exc: console_errors.append(str(exc)))
            page.on("request", lambda r: on_request(r.url))
            page.goto(running.url + "/", wait_until="load")

            # The charts receive live data: requests counted in the throughput chart...
            page.wait_for_function(
                """() => {
                    const d = window.modelstreamDashboard;
                    const c = d && d.charts.throughput;
                    return c && c.data[1].reduce((a, b) => a + (b || 0), 0) > 0;
                }""",
                timeout=60_000,
            )
            # ...and they keep updating in place (a later poll, same chart object).
            first = page.evaluate("window.modelstreamDashboard.polls")
            # (Functions, not expressions: the page's CSP forbids eval.)
            page.wait_for_function(
                "n => window.modelstreamDashboard.polls > n", arg=first, timeout=30_000
            )
            page.wait_for_function(
                "() => parseFloat(document.getElementById('kpi-rps').textContent) > 0",
                timeout=30_000,
            )
            assert page.evaluate(
                "() => window.modelstreamDashboard.charts.latency.data[2].some(v => v > 0)"
            )
            answered = page.evaluate(
                "() => window.modelstreamDashboard.charts.answers.series.slice(1).map(s => s.label)"
            )
            assert "lr@1" in answered  # the champion after the rollback answers

            # The versions timeline tells the story, with reasons.
            timeline = page.inner_text("#timeline")
            assert "rolled back" in timeline and "tree p99 too slow" in timeline
            assert "promoted tree@1 over lr@1" in timeline
            assert "tree wins on recall" in timeline
            assert "published lr@1" in timeline and "published tree@1" in timeline

            # Alerts, late events and every live version with its scorer statistics.
            assert "x[0] drifted" in page.inner_text("#alerts")
            assert page.inner_text("#kpi-late") == "3"
            models = page.inner_text("#models")
            assert "lr@1" in models and "tree@1" in models

            # The monitor measures quality once enough labels have arrived.
            page.wait_for_function(
                "() => document.getElementById('models').textContent.includes('accuracy')",
                timeout=90_000,
            )
            page.wait_for_function(
                "() => window.modelstreamDashboard.charts.throughput.data[1]"
                ".filter(v => v > 0).length >= 12",
                timeout=30_000,
            )
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            context.close()

    assert console_errors == []
    assert foreign == []
    assert running.sent[0] > 0
