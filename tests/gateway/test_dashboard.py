"""The dashboard's JSON, page and static files, on the in-memory backplane (fast).

Results, alerts and late events are produced onto the service's topics as the
rendezvous, the monitor and the featurizer would; the endpoint must report them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from modelstream.backplane.memory import MemoryBackplane
from modelstream.backplane.records import OutRecord, now_ms
from modelstream.gateway.app import build_app
from modelstream.gateway.dashboard_feed import SecondBuckets
from modelstream.gateway.dashboard_timeline import timeline
from modelstream.gateway.dataplane import DataPlane
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.monitoring.alerts import Alert, AlertKind
from modelstream.rendezvous.outcome import LATE_HEADER
from modelstream.scoring.stats import VersionStats
from modelstream.settings import Settings
from modelstream.testing.sklearn import onnx_classifier
from modelstream.wire.results import Result
from modelstream.wire.tensors import Tensor
from modelstream.wire.topics import ServiceTopics

TOKEN = "dash-token"
OUT = (Tensor("label", "INT64", (1,), (1,)),)


def result(
    i: int, at: int, model: str | None = "lr", *, met: bool = True, ms: float = 4.0
) -> Result:
    return Result(
        request_id=f"r{i}",
        service="fraud",
        policy="preference",
        outputs=OUT if model else None,
        deadline=at + 100,
        decided_at=at,
        model=model,
        version=1 if model else None,
        fallback=model is None,
        deadline_met=met,
        decided_in_ms=ms,
    )


def test_results_are_counted_per_second_of_their_decision() -> None:
    buckets = SecondBuckets(horizon_s=300)
    base = 1_700_000_000_000
    buckets.add(result(1, base + 10, ms=2.0))
    buckets.add(result(2, base + 900, "tree", ms=8.0))
    buckets.add(result(3, base + 1_500, None, met=False, ms=100.0))
    buckets.add(result(4, base + 2_100))  # the second still filling: not in the series

    series = buckets.series(base + 2_500, seconds=60, min_s=30)

    assert len(series["t"]) == 30  # started 2 s ago: the window shrinks to min_s
    assert series["t"][-1] == base // 1000 + 1
    assert series["requests"][-2:] == [2, 1]
    assert series["misses"][-2:] == [0, 1]
    assert series["answers"]["lr@1"][-2:] == [1, 0]
    assert series["answers"]["tree@1"][-2:] == [1, 0]
    assert series["answers"]["fallback"][-2:] == [0, 1]
    assert series["p99_ms"][-1] == pytest.approx(100.0, rel=0.02)
    assert series["p50_ms"][0] is None  # no answer that second
    now = series["current"]
    assert now["total"] == 3 and now["total_misses"] == 1
    assert now["requests_per_s"] == pytest.approx(3 / 5)


@pytest.fixture(scope="module")
def models() -> tuple[bytes, bytes]:
    lr, _ = onnx_classifier("logreg", seed=0, rows=200)
    tree, _ = onnx_classifier("tree", seed=0, rows=200)
    return lr, tree


def deployed(
    models: tuple[bytes, bytes], token: str | None = None
) -> tuple[MemoryBackplane, Registry, Settings]:
    settings = Settings(backplane="memory://", api_token=token)
    backplane = MemoryBackplane(settings)
    registry = Registry(backplane, settings)
    registry.publish("fraud", "lr", models[0], format="onnx")
    registry.publish("fraud", "tree", models[1], format="onnx")
    registry.deploy("fraud", ModelRef("lr", 1), deadline_ms=50)
    registry.deploy(
        "fraud", ModelRef("lr", 1), challengers=[ModelRef("tree", 1)], reason="try tree"
    )
    registry.promote("fraud", ModelRef("tree", 1), reason="better recall")
    registry.rollback("fraud", reason="p99 too high")
    return backplane, registry, settings


def test_the_timeline_tells_what_happened_newest_first(models: tuple[bytes, bytes]) -> None:
    _, registry, _ = deployed(models)
    events = timeline(registry.descriptors("fraud"), registry.history("fraud"))
    kinds = [e["kind"] for e in events]
    assert kinds == ["rolled_back", "promoted", "deployed", "deployed", "published", "published"]
    assert events[0]["text"] == "rolled back to lr@1"
    assert "p99 too high" in events[0]["reason"]
    assert events[1]["text"] == "promoted tree@1 over lr@1"
    assert events[1]["reason"] == "better recall"
    assert events[2]["text"] == "deployed tree@1 as challenger"
    assert events[3]["text"] == "deployed lr@1 as champion"
    assert [e["revision"] for e in events[:4]] == [4, 3, 2, 1]


class Client:
    """A synchronous client of the app in this process (no server, no lifespan needed:
    the dashboard's routes do not use the data plane's producer)."""

    def __init__(self, app: Starlette, headers: dict[str, str]) -> None:
        self.app = app
        self.headers = headers

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://gateway", headers=self.headers
            ) as http:
                return await http.get(path, headers=headers)

        return asyncio.run(go())


@pytest.fixture
def client(models: tuple[bytes, bytes]) -> Iterator[Client]:
    backplane, registry, settings = deployed(models, TOKEN)
    stats = [
        VersionStats(ModelRef("lr", 1), "champion", 1, 2, 10, 1, 0.1, 0.2, 0.9, 0.2, 0.8),
        VersionStats(ModelRef("tree", 1), "challenger", 1, 2, 10, 0, 0.1, 0.3, 1.2, 0.3, 1.1),
    ]
    plane = DataPlane(backplane, settings, registry, "gw-dash")
    app = build_app(plane, stats=lambda service: stats)
    topics = ServiceTopics("fraud")
    at = now_ms() - 3_000  # complete seconds, inside the window
    records = [OutRecord(result(i, at + i).encode(), f"r{i}".encode()) for i in range(4)]
    records.append(OutRecord(result(9, at, None, met=False).encode(), b"r9"))
    late_note = OutRecord(result(0, at).encode(), b"r0", headers=((LATE_HEADER, b"1"),))
    backplane.produce(topics.results, [*records, late_note])
    alert = Alert(
        "fraud", AlertKind.LATENCY, "tree@1", "latency_p99_ms", 80.0, 50.0, {}, "slow", at
    )
    backplane.produce(topics.alerts, [OutRecord(alert.encode(), alert.key)])
    backplane.produce(topics.late, [OutRecord(b"{}", b"e1"), OutRecord(b"{}", b"e2")])
    try:
        yield Client(app, {"Authorization": f"Bearer {TOKEN}"})
    finally:
        app.state.dashboard.stop()
        backplane.close()


def view_when(client: Client, ready: Any) -> dict[str, Any]:
    """Poll the endpoint like the page does until ``ready(view)`` (bounded)."""
    deadline = time.monotonic() + 10
    while True:
        response = client.get("/api/v1/services/fraud/dashboard")
        assert response.status_code == 200, response.text
        view: dict[str, Any] = response.json()
        if ready(view) or time.monotonic() > deadline:
            return view
        time.sleep(0.05)


def test_the_service_endpoint_reports_traffic_versions_alerts_and_late_events(
    client: Client,
) -> None:
    view = view_when(client, lambda v: v["current"]["total"] == 5 and v["alerts"])

    assert view["current"]["total"] == 5  # the late-answers note is not an answer
    assert view["current"]["total_misses"] == 1
    assert sum(view["series"]["requests"]) == 5
    assert sum(view["series"]["answers"]["lr@1"]) == 4
    assert sum(view["series"]["answers"]["fallback"]) == 1
    assert len(view["series"]["t"]) == len(view["series"]["p99_ms"])

    rows = {m["ref"]: m for m in view["models"]}
    assert rows["lr@1"]["role"] == "champion" and rows["lr@1"]["live"]
    assert rows["lr@1"]["invocations"] == 10 and rows["lr@1"]["errors"] == 1
    assert rows["lr@1"]["answer_share"] == pytest.approx(0.8)
    assert rows["tree@1"]["latency_ms"]["p99"] == 1.1
    assert rows["tree@1"]["quality"] is None  # no monitor in this process
    assert view["sources"]["monitor"] is False and view["monitor"] is None

    assert view["deployment"]["revision"] == 4
    assert view["timeline"][0]["kind"] == "rolled_back"
    assert [a["message"] for a in view["alerts"]] == ["slow"]
    assert view["late"] == {"count": 2}

    services = client.get("/api/v1/dashboard").json()["services"]
    assert services == [{"service": "fraud", "champion": "lr@1", "deadline_ms": 50, "models": 2}]


def test_an_unknown_service_is_a_404(client: Client) -> None:
    response = client.get("/api/v1/services/nope/dashboard")
    assert response.status_code == 404
    assert "nope" in response.json()["error"]


def test_the_json_needs_the_token_but_the_page_does_not(client: Client) -> None:
    anonymous = {"Authorization": ""}
    assert client.get("/api/v1/dashboard", headers=anonymous).status_code == 401
    page = client.get("/", headers=anonymous)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    script = client.get("/static/dashboard.js", headers=anonymous)
    assert script.headers["content-type"].startswith("text/javascript")
    assert client.get("/static/uPlot.iife.min.js").status_code == 200
    assert client.get("/static/uPlot.min.css").headers["content-type"].startswith("text/css")
    assert client.get("/static/missing.js").status_code == 404
    assert client.get("/static/..%2Fapp.py").status_code == 404


def test_the_page_loads_only_files_the_gateway_serves(client: Client) -> None:
    page = client.get("/").text
    for asset in ("/static/uPlot.iife.min.js", "/static/dashboard.js", "/static/dashboard.css"):
        assert asset in page
        assert client.get(asset).status_code == 200
    assert "http://" not in page and "https://" not in page
