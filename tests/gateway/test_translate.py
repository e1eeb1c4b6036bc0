"""Unit tests of the protocol <-> record translation (no I/O)."""

from __future__ import annotations

import pytest

from modelstream.errors import DeadlineExceeded, InvalidRequest
from modelstream.gateway.translate import (
    check_inputs,
    infer_response,
    parse_infer,
    parse_version,
    schema_metadata,
)
from modelstream.models.deployment import Deployment, LiveModel, Role
from modelstream.models.refs import ModelRef
from modelstream.models.schema import ModelSchema, TensorSpec
from modelstream.wire.results import Result
from modelstream.wire.tensors import Tensor

SCHEMA = ModelSchema(
    inputs=(TensorSpec("input", "FP32", (-1, 4)),),
    outputs=(TensorSpec("label", "INT64", (-1,)), TensorSpec("probabilities", "FP32", (-1, 2))),
)


def body(**extra: object) -> dict[str, object]:
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}
    return {"inputs": [tensor], **extra}


def test_parse_infer_reads_id_deadline_entity_and_outputs() -> None:
    call = parse_infer(
        body(
            id="r1",
            parameters={"deadline_ms": 30, "entity": "truck-7", "x": 1},
            outputs=[{"name": "label"}],
        )
    )
    assert call.id == "r1"
    assert call.deadline_ms == 30
    assert call.entity == "truck-7"
    assert call.parameters["x"] == 1
    assert call.outputs == ("label",)
    assert call.inputs[0] == Tensor("input", "FP32", (1, 4), (1, 2, 3, 4))


def test_parse_infer_accepts_nested_data() -> None:
    payload = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}]
    }
    assert parse_infer(payload).inputs[0].data == (1, 2, 3, 4)


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ([], "JSON object"),
        ({}, "'inputs'"),
        ({"inputs": []}, "'inputs'"),
        ({"inputs": [{"name": "x", "datatype": "FP99", "shape": [1], "data": [1]}]}, "FP99"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1]}]}, "needs 2"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}]}, "shape"),
        (body(id=7), "'id'"),
        (body(parameters=[]), "'parameters'"),
        (body(parameters={"deadline_ms": 0}), "deadline_ms"),
        (body(parameters={"deadline_ms": True}), "deadline_ms"),
        (body(parameters={"entity": 3}), "entity"),
        (body(outputs=[{"nom": "x"}]), "'outputs'"),
    ],
)
def test_parse_infer_refuses_bad_bodies(payload: object, fragment: str) -> None:
    with pytest.raises(InvalidRequest, match=fragment):
        parse_infer(payload)


def test_parse_infer_refuses_duplicate_input_names() -> None:
    tensor = {"name": "a", "datatype": "FP32", "shape": [1], "data": [1]}
    with pytest.raises(InvalidRequest, match="unique"):
        parse_infer({"inputs": [tensor, tensor]})


def test_check_inputs_accepts_a_fitting_batch() -> None:
    check_inputs(parse_infer(body()).inputs, SCHEMA)
    batch = {"name": "input", "datatype": "FP32", "shape": [3, 4], "data": list(range(12))}
    check_inputs(parse_infer({"inputs": [batch]}).inputs, SCHEMA)


@pytest.mark.parametrize(
    ("tensor", "fragment"),
    [
        (
            {"name": "other", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]},
            "'input' is missing",
        ),
        (
            {"name": "input", "datatype": "FP64", "shape": [1, 4], "data": [1, 2, 3, 4]},
            "datatype FP32",
        ),
        ({"name": "input", "datatype": "FP32", "shape": [4], "data": [1, 2, 3, 4]}, "shape"),
        ({"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}, "shape"),
        (
            {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, "x", 4]},
            "do not fit",
        ),
    ],
)
def test_check_inputs_names_the_input_at_fault(tensor: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidRequest, match=fragment):
        check_inputs(parse_infer({"inputs": [tensor]}).inputs, SCHEMA)


def test_check_inputs_refuses_extra_inputs() -> None:
    extra = {"name": "extra", "datatype": "FP32", "shape": [1], "data": [1]}
    payload = body()
    payload["inputs"] = [*payload["inputs"], extra]  # type: ignore[misc]
    with pytest.raises(InvalidRequest, match="'extra' is not an input"):
        check_inputs(parse_infer(payload).inputs, SCHEMA)


DEPLOYMENT = Deployment(
    "fraud",
    (LiveModel(ModelRef("gbm", 3), Role.CHAMPION), LiveModel(ModelRef("lr", 2), Role.CHALLENGER)),
)


def test_parse_version_forms() -> None:
    assert parse_version("lr@2", DEPLOYMENT) == ModelRef("lr", 2)
    assert parse_version("5", DEPLOYMENT) == ModelRef("gbm", 5)
    for bad in ("lr", "lr@x", "0", "@3"):
        with pytest.raises(InvalidRequest):
            parse_version(bad, DEPLOYMENT)


def result(**overrides: object) -> Result:
    base: dict[str, object] = {
        "request_id": "r1",
        "service": "fraud",
        "policy": "preference",
        "outputs": (Tensor("label", "INT64", (1,), (1,)), Tensor("p", "FP32", (1, 2), (0.1, 0.9))),
        "deadline": 100,
        "decided_at": 90,
        "model": "gbm",
        "version": 3,
    }
    base.update(overrides)
    return Result(**base)  # type: ignore[arg-type]


def test_infer_response_names_service_model_and_policy() -> None:
    out = infer_response(result(), (), "client-id")
    assert out["model_name"] == "fraud"
    assert out["model_version"] == "gbm@3"
    assert out["id"] == "client-id"
    assert out["parameters"] == {
        "policy": "preference",
        "model": "gbm@3",
        "deadline_met": True,
        "fallback": False,
    }
    assert [o["name"] for o in out["outputs"]] == ["label", "p"]


def test_infer_response_filters_requested_outputs_and_defaults_the_id() -> None:
    out = infer_response(result(), ("p",))
    assert out["id"] == "r1"
    assert [o["name"] for o in out["outputs"]] == ["p"]


def test_infer_response_of_a_fallback_has_no_model_version() -> None:
    out = infer_response(result(model=None, version=None, fallback=True, deadline_met=False))
    assert "model_version" not in out
    assert out["parameters"]["fallback"] is True


def test_infer_response_without_outputs_is_a_deadline_miss() -> None:
    with pytest.raises(DeadlineExceeded, match="no model answered in 50 ms"):
        infer_response(result(outputs=None, error="no model answered in 50 ms", deadline_met=False))


def test_schema_metadata_lists_tensors() -> None:
    meta = schema_metadata("fraud", ["gbm@3"], SCHEMA, "onnxruntime_onnx")
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]
    assert schema_metadata("fraud", [], None, "")["inputs"] == []
