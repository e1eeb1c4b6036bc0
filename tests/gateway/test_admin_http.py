"""Management over real HTTP: token, publish, deploy, promote, rollback, policy, stats."""

from __future__ import annotations

import base64

import pytest

from tests.gateway.conftest import Stack

pytestmark = pytest.mark.integration


def test_a_wrong_token_is_refused(stack: Stack) -> None:
    response = stack.client.get("/api/v1/services", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "MODELSTREAM_API_TOKEN" in response.json()["error"]


def test_lists_services_models_and_deployment(stack: Stack) -> None:
    assert {"fraud", "idle"} <= set(stack.admin.get("/api/v1/services").json()["services"])
    models = stack.admin.get("/api/v1/services/fraud/models").json()["models"]
    assert {m["ref"] for m in models} == {"lr@1", "lr@2", "tree@1"}
    assert all("data" not in m for m in models)
    one = stack.admin.get("/api/v1/services/fraud/models/tree@1").json()
    assert one["format"] == "onnx" and one["schema"]["inputs"][0]["name"] == "input"
    deployment = stack.admin.get("/api/v1/services/fraud/deployment").json()
    assert [(m["name"], m["role"]) for m in deployment["models"]] == [
        ("lr", "champion"),
        ("tree", "challenger"),
    ]
    assert stack.admin.get("/api/v1/services/nope/deployment").status_code == 404
    assert stack.admin.get("/api/v1/services/fraud/models/lr@7").status_code == 404
    assert stack.admin.get("/api/v1/services/fraud/models/lr").status_code == 400


def test_publish_deploy_promote_policy_rollback(stack: Stack) -> None:
    base = "/api/v1/services/ops"
    for name in ("lr", "tree"):
        data = base64.b64encode(stack.models[f"{name}@1"]).decode()
        body = {"name": name, "format": "onnx", "data": data, "meta": {"created_by": "test"}}
        response = stack.admin.post(f"{base}/models", json=body)
        assert response.status_code == 201, response.text
        assert response.json()["ref"] == f"{name}@1"
        assert response.json()["created_by"] == "test"
    assert stack.admin.post(f"{base}/models", json={"name": "x", "data": "!!"}).status_code == 400
    assert stack.admin.post(f"{base}/models", json={"name": "x"}).status_code == 400
    bad_model = {"name": "x", "data": base64.b64encode(b"not onnx").decode()}
    assert stack.admin.post(f"{base}/models", json=bad_model).status_code == 400

    deployed = stack.admin.post(
        f"{base}/deployment",
        json={"champion": "lr@1", "challengers": ["tree@1"], "deadline_ms": 80, "reason": "first"},
    )
    assert deployed.status_code == 201, deployed.text
    assert deployed.json()["deadline_ms"] == 80
    assert stack.admin.post(f"{base}/deployment", json={"champion": "zz@1"}).status_code == 404

    promoted = stack.admin.post(f"{base}/promote", json={"model": "tree@1", "reason": "better"})
    assert promoted.status_code == 200, promoted.text
    roles = {m["name"]: m["role"] for m in promoted.json()["models"]}
    assert roles["tree"] == "champion"
    # The data plane sees the change at once (its cache was invalidated).
    assert stack.client.get("/v2/models/ops").json()["versions"][0] == "tree@1"

    policy = stack.admin.put(f"{base}/policy", json={"kind": "first", "reason": "speed"})
    assert policy.status_code == 200, policy.text
    assert policy.json()["policy"]["kind"] == "first"
    assert stack.admin.put(f"{base}/policy", json={"kind": "best"}).status_code == 400

    for refused, fragment in (
        ({"kind": "preference", "order": ["tree", "gbm"]}, "gbm, not live"),
        ({"kind": "consensus", "min_answers": 3}, "lower min_answers to at most 2"),
    ):
        response = stack.admin.put(f"{base}/policy", json=refused)
        assert response.status_code == 400, response.text
        assert fragment in response.json()["error"]
    assert stack.admin.get(f"{base}/deployment").json()["policy"]["kind"] == "first"

    rolled = stack.admin.post(f"{base}/rollback", json={"reason": "oops"})
    assert rolled.status_code == 200, rolled.text
    history = stack.admin.get(f"{base}/deployment/history").json()["deployments"]
    assert [d["revision"] for d in history] == [1, 2, 3, 4]


def test_stats_per_model_from_the_scores_topic(stack: Stack) -> None:
    rows = stack.x[:2].tolist()
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 4], "data": rows}]}
    assert stack.client.post("/v2/models/fraud/infer", json=body).status_code == 200
    stats = stack.admin.get("/api/v1/services/fraud/stats").json()
    assert stats["service"] == "fraud"
    by_ref = {m["ref"]: m for m in stats["models"]}
    assert {"lr@1", "tree@1"} <= set(by_ref)
    assert by_ref["lr@1"]["invocations"] >= 1
    assert stack.admin.get("/api/v1/services/nope/stats").status_code == 404
