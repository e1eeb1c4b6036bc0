"""The gateway over real HTTP against the real rendezvous, scorers and ONNX models."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

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


def test_metrics_count_requests_answers_and_misses(stack: Stack) -> None:
    stack.client.post("/v2/models/fraud/infer", json=infer_body(stack.x[:1]))
    stack.client.post("/v2/models/fraud/infer", content=b"{")
    text = stack.client.get("/metrics").text
    assert 'modelstream_requests_total{service="fraud"}' in text
    assert 'modelstream_answers_total{model="lr@1",service="fraud"}' in text
    assert "modelstream_request_latency_seconds_bucket" in text
    assert "modelstream_deadline_misses_total" in text
    assert 'modelstream_request_errors_total{service="fraud",status="400"}' in text
    assert "modelstream_scorer_batch_size" in text or "modelstream_model_swaps" in text


def test_openapi_document_is_served(stack: Stack) -> None:
    doc = stack.client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "/v2/models/{service}/infer" in doc["paths"]
