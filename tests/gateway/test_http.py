"""The gateway over real HTTP against the real rendezvous, scorers and ONNX models."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelstream.backplane.records import OutRecord
from modelstream.models.codec import encode_deployment
from modelstream.models.deployment import Deployment, LiveModel, Role
from modelstream.models.refs import ModelRef
from tests.gateway.conftest import Stack

pytestmark = pytest.mark.integration


def infer_body(rows: Any, **extra: Any) -> dict[str, Any]:
    rows = np.asarray(rows, dtype=np.float32)
    tensor = {
        "name": "input",
        "datatype": "FP32",
        "shape": list(rows.shape),
        "data": rows.ravel().tolist(),
    }
    return {"inputs": [tensor], **extra}


def direct(model: bytes, rows: Any) -> dict[str, Any]:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(
        zip(names, session.run(None, {"input": np.asarray(rows, dtype=np.float32)}), strict=True)
    )


def test_server_metadata_and_health(stack: Stack) -> None:
    meta = stack.client.get("/v2").json()
    assert (
        meta["name"] == "modelstream" and "version" in meta and isinstance(meta["extensions"], list)
    )
    assert stack.client.get("/v2/").status_code == 200
    assert stack.client.get("/v2/health/live").status_code == 200
    assert stack.client.get("/v2/models/fraud/ready").json() == {"name": "fraud", "ready": True}


def test_model_metadata_comes_from_the_champion_schema(stack: Stack) -> None:
    meta = stack.client.get("/v2/models/fraud").json()
    assert meta["name"] == "fraud"
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["versions"] == ["lr@1", "tree@1"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert {o["name"] for o in meta["outputs"]} == {"label", "probabilities"}
    assert stack.client.get("/v2/models/fraud/versions/tree@1").json()["name"] == "fraud"


def test_answers_match_the_onnx_model_called_directly(stack: Stack) -> None:
    rows = stack.x[:5]
    expected = direct(stack.models["lr@1"], rows)
    response = stack.client.post(
        "/v2/models/fraud/infer", json=infer_body(rows, id="match-1", parameters={"entity": "e1"})
    )
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["model_name"] == "fraud"
    assert out["model_version"] == "lr@1"
    assert out["id"] == "match-1"
    assert out["parameters"]["policy"] == "preference"
    assert out["parameters"]["model"] == "lr@1"
    assert out["parameters"]["deadline_met"] is True
    assert out["parameters"]["fallback"] is False
    outputs = {o["name"]: o for o in out["outputs"]}
    assert outputs["label"]["data"] == expected["label"].ravel().tolist()
    np.testing.assert_allclose(
        np.asarray(outputs["probabilities"]["data"]).reshape(outputs["probabilities"]["shape"]),
        expected["probabilities"],
        rtol=1e-6,
    )


def test_a_version_url_is_answered_by_that_version_alone(stack: Stack) -> None:
    rows = stack.x[5:8]
    expected = direct(stack.models["tree@1"], rows)
    out = stack.client.post("/v2/models/fraud/versions/tree@1/infer", json=infer_body(rows)).json()
    assert out["model_version"] == "tree@1"
    assert {o["name"]: o for o in out["outputs"]}["label"]["data"] == expected["label"].tolist()
    # A bare integer is a version of the champion's model.
    out = stack.client.post("/v2/models/fraud/versions/1/infer", json=infer_body(rows)).json()
    assert out["model_version"] == "lr@1"
    assert stack.client.get("/v2/models/fraud/versions/tree@1/ready").status_code == 200


def test_requested_outputs_are_filtered(stack: Stack) -> None:
    body = infer_body(stack.x[:1], outputs=[{"name": "label"}])
    out = stack.client.post("/v2/models/fraud/infer", json=body).json()
    assert [o["name"] for o in out["outputs"]] == ["label"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "fragment"),
    [
        ("POST", "/v2/models/fraud/infer", b"{not json", 400, "not valid JSON"),
        (
            "POST",
            "/v2/models/fraud/infer",
            {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]},
            400,
            "'input'",
        ),
        (
            "POST",
            "/v2/models/fraud/infer",
            {
                "inputs": [
                    {"name": "input", "datatype": "INT64", "shape": [1, 4], "data": [1, 2, 3, 4]}
                ]
            },
            400,
            "datatype FP32",
        ),
        (
            "POST",
            "/v2/models/fraud/infer",
            {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2]}]},
            400,
            "needs 4",
        ),
        (
            "POST",
            "/v2/models/fraud/infer",
            {
                "inputs": [
                    {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1e39, 0, 0, 0]}
                ]
            },
            400,
            "too large for FP32",
        ),
        (
            "POST",
            "/v2/models/fraud/infer",
            {
                "inputs": [
                    {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}
                ],
                "outputs": [{"name": "label"}, {"name": "lable"}],
            },
            400,
            "'lable' is not an output of the model; it has label, probabilities",
        ),
        ("POST", "/v2/models/nope/infer", {"inputs": []}, 404, "nope"),
        ("GET", "/v2/models/nope", None, 404, "nope"),
        ("GET", "/v2/models/nope/ready", None, 404, "nope"),
        ("POST", "/v2/models/fraud/versions/lr@9/infer", None, 404, "lr@9"),
        ("GET", "/v2/models/fraud/versions/lr@9", None, 404, "lr@9"),
        ("POST", "/v2/models/fraud/versions/lr@2/infer", None, 503, "not live"),
        ("GET", "/v2/models/fraud/versions/lr@2/ready", None, 503, "not live"),
        ("POST", "/v2/models/fraud/versions/x@y/infer", None, 400, "NAME@VERSION"),
        ("GET", "/v2/nowhere", None, 404, "Not Found"),
        ("DELETE", "/v2/models/fraud/infer", None, 405, "Method Not Allowed"),
        ("GET", "/api/v1/services", None, 401, "Bearer"),
        ("POST", "/api/v1/services/fraud/rollback", {}, 401, "Bearer"),
    ],
)
def test_errors_have_the_right_status_and_an_error_body(
    stack: Stack, method: str, path: str, body: Any, status: int, fragment: str
) -> None:
    if body is None:
        body = infer_body(stack.x[:1])
    content = body if isinstance(body, bytes) else None
    response = stack.client.request(
        method, path, content=content, json=None if content is not None else body
    )
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]


def test_a_deadline_nobody_meets_is_a_504(stack: Stack) -> None:
    # No rendezvous at all: the gateway gives up itself after deadline + grace.
    response = stack.client.post("/v2/models/idle/infer", json=infer_body(stack.x[:1]))
    assert response.status_code == 504
    assert "deadline" in response.json()["error"]
    # A rendezvous but no scorer: it answers the deadline miss, without a fallback.
    response = stack.client.post(
        "/v2/models/unscored/infer", json=infer_body(stack.x[:1], parameters={"deadline_ms": 50})
    )
    assert response.status_code == 504
    assert response.json()["error"]


def metric(stack: Stack, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` on /metrics whose labels include ``labels``
    (0 when there is none: Prometheus prints HELP and TYPE lines even then)."""
    text = stack.client.get("/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def wait_for_metric(stack: Stack, above: float, name: str, **labels: str) -> float:
    deadline = time.monotonic() + 20
    while (value := metric(stack, name, **labels)) <= above and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def test_metrics_count_requests_answers_and_misses(stack: Stack) -> None:
    fraud = {"service": "fraud"}
    requests = metric(stack, "modelstream_requests_total", **fraud)
    answers = metric(stack, "modelstream_answers_total", model="lr@1", **fraud)
    latencies = metric(stack, "modelstream_request_latency_seconds_count", **fraud)
    bad = metric(stack, "modelstream_request_errors_total", status="400", **fraud)
    misses = metric(stack, "modelstream_deadline_misses_total", service="unscored")
    batches = metric(stack, "modelstream_scorer_batch_size_count", model="lr", **fraud)
    assert (
        stack.client.post("/v2/models/fraud/infer", json=infer_body(stack.x[:1])).status_code == 200
    )
    assert stack.client.post("/v2/models/fraud/infer", content=b"{").status_code == 400
    missed = infer_body(stack.x[:1], parameters={"deadline_ms": 50})
    assert stack.client.post("/v2/models/unscored/infer", json=missed).status_code == 504

    # An unreadable body is counted as an error, not as a request.
    assert metric(stack, "modelstream_requests_total", **fraud) == requests + 1
    assert metric(stack, "modelstream_answers_total", model="lr@1", **fraud) == answers + 1
    assert metric(stack, "modelstream_request_latency_seconds_count", **fraud) == latencies + 1
    assert metric(stack, "modelstream_request_errors_total", status="400", **fraud) == bad + 1
    assert metric(stack, "modelstream_deadline_misses_total", service="unscored") == misses + 1
    # The scorers in the gateway's process report their micro-batches (the answer may
    # come back before the slower model's scorer has counted its batch: wait for it).
    assert (
        wait_for_metric(stack, batches, "modelstream_scorer_batch_size_count", model="lr", **fraud)
        > batches
    )
    assert (
        wait_for_metric(stack, 0, "modelstream_scorer_batch_size_count", model="tree", **fraud) > 0
    )
    assert metric(stack, "modelstream_scorer_batch_size_sum", model="lr", **fraud) >= batches + 1
    assert metric(stack, "modelstream_scorer_batch_latency_seconds_count", model="lr", **fraud) > 0


def test_openapi_document_is_served(stack: Stack) -> None:
    doc = stack.client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "/v2/models/{service}/infer" in doc["paths"]


def test_the_server_is_not_ready_while_a_service_has_no_readable_champion(
    stack: Stack,
) -> None:
    assert stack.client.get("/v2/health/ready").json() == {"ready": True}
    # A service only published, never deployed, has nothing to serve: still ready.
    stack.registry.publish("undeployed", "lr", stack.models["lr@1"], format="onnx")
    assert stack.client.get("/v2/health/ready").status_code == 200
    # A deployment whose champion has no descriptor (on Kafka: not read yet).
    deployment = Deployment("leaderless", (LiveModel(ModelRef("lr", 7), Role.CHAMPION),))
    stack.backplane.create_topic("leaderless.deployment", 1, compacted=True)
    stack.backplane.produce(
        "leaderless.deployment", [OutRecord(encode_deployment(deployment), key=b"leaderless")]
    )
    for path in ("/v2/health/ready", "/v2/models/leaderless/ready"):
        response = stack.client.get(path)
        assert response.status_code == 503, (path, response.text)
        assert "'leaderless' has no champion that can be read yet" in response.json()["error"]
    assert stack.client.get("/v2/models/fraud/ready").status_code == 200  # others still are


def test_a_deployed_version_is_counted_as_a_swap(stack: Stack) -> None:
    # Last in this module: it changes what serves fraud (and restores it).
    lr = {"service": "fraud", "model": "lr"}
    loaded = metric(stack, "modelstream_model_swaps_total", **lr)
    assert loaded >= 1  # the first load of lr@1 is a swap too
    stack.registry.deploy("fraud", ModelRef("lr", 2), challengers=[ModelRef("tree", 1)])
    assert wait_for_metric(stack, loaded, "modelstream_model_swaps_total", **lr) == loaded + 1
    out = stack.client.post("/v2/models/fraud/infer", json=infer_body(stack.x[:1])).json()
    assert out["model_version"] == "lr@2"
    assert metric(stack, "modelstream_model_swaps_total", service="fraud", model="tree") == 1
    stack.registry.deploy(
        "fraud", ModelRef("lr", 1), challengers=[ModelRef("tree", 1)], deadline_ms=2000
    )
    assert wait_for_metric(stack, loaded + 1, "modelstream_model_swaps_total", **lr) == loaded + 2
