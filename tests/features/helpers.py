"""Shared helpers of the feature tests: a small feature set, records, and reading topics."""

from __future__ import annotations

from typing import Any

import onnx
import orjson
from onnx import TensorProto, helper

from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord, Record
from modelstream.features.aggregates import Count, Last, Mean, Slope
from modelstream.features.definitions import Feature, FeatureSet, Hopping, Session, Tumbling
from modelstream.features.records import request_record
from modelstream.wire.requests import InferenceRequest, decode_request
from modelstream.wire.tensors import Tensor


def truck_features(ooo: int = 0, lateness: int = 0, idle: int = 60_000) -> FeatureSet:
    return FeatureSet(
        "trucks",
        "1",
        [
            Feature("temp_mean", field="temp", agg=Mean(), window=Tumbling(100)),
            Feature("events", agg=Count(), window=Tumbling(100)),
            Feature("temp_trend", field="temp", agg=Slope(), window=Hopping(200, 100)),
            Feature("temp_last", field="temp", agg=Last(), window=Session(50)),
        ],
        out_of_orderness_ms=ooo,
        allowed_lateness_ms=lateness,
        idle_timeout_ms=idle,
    )


def event(entity: str, t: int, temp: float) -> OutRecord:
    return OutRecord(orjson.dumps({"temp": temp}), entity.encode(), (), t)


def request(rid: str, entity: str, t: int) -> OutRecord:
    tensor = Tensor("x", "FP32", (1, 1), (0.0,))
    req = InferenceRequest(rid, "trucks", t, t + 1000, (tensor,), entity=entity)
    return request_record(req)


def read_all(backplane: Backplane, topic: str) -> list[Record]:
    consumer = backplane.consumer([topic], start="earliest")
    out: list[Record] = []
    while batch := consumer.poll(10_000, timeout=0.05):
        out.extend(batch)
    consumer.close()
    return out


def enriched(backplane: Backplane, topic: str) -> dict[str, list[dict[str, Any]]]:
    """Every copy of every enriched request's features, by request id."""
    out: dict[str, list[dict[str, Any]]] = {}
    for record in read_all(backplane, topic):
        req = decode_request(record.value)
        out.setdefault(req.id, []).append(dict(req.features or {}))
    return out


# The service spec the end-to-end tests deploy: the echo model as champion, over the
# feature set they write next to it as ``trucks-features.yaml``.
TRUCKS_SERVICE_YAML = """
service: trucks
partitions: 2
deadline_ms: 10000
features: trucks-features.yaml
models:
  - {name: echo, file: echo.onnx, format: onnx, role: champion}
"""


def echo_model(width: int) -> bytes:
    """A real ONNX model that returns its ``features`` input (``[-1, width]``) as ``echo``."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["features"], ["echo"])],
        "echo",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", width])],
        [helper.make_tensor_value_info("echo", TensorProto.FLOAT, ["n", width])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
