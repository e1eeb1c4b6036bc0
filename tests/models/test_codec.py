"""The wire codec of descriptors and deployments: round trips and refusals."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from modelstream.errors import DecodeError
from modelstream.models.codec import (
    decode_deployment,
    decode_descriptor,
    descriptor_to_json,
    encode_deployment,
    encode_descriptor,
)
from modelstream.models.deployment import (
    Deployment,
    Fallback,
    LiveModel,
    Policy,
    PolicyKind,
    Role,
)
from modelstream.models.descriptor import Lineage, ModelDescriptor, TrainingSpan
from modelstream.models.integrity import sha256_hex
from modelstream.models.loaders.common import classifier_schema
from modelstream.models.refs import ModelRef


def descriptor(**changes: object) -> ModelDescriptor:
    data = b"\x00model-bytes\xff"
    d = ModelDescriptor(
        service="fraud",
        name="gbm",
        version=3,
        format="onnx",
        sha256=sha256_hex(data),
        schema=classifier_schema(4),
        lineage=Lineage(
            created_at=1700000000000,
            created_by="ana",
            training=TrainingSpan(1, 2, 1000),
            metrics={"auc": 0.91},
            parent_version=2,
            feature_set="fs-7",
            tags={"team": "risk"},
        ),
        data=data,
        size=len(data),
    )
    return dataclasses.replace(d, **changes)  # type: ignore[arg-type]


def test_descriptor_round_trip_keeps_every_field() -> None:
    d = descriptor(signature="c2ln", key_id="0123456789abcdef")
    assert decode_descriptor(encode_descriptor(d)) == d


def test_descriptor_by_location_round_trips() -> None:
    d = descriptor(data=None, location="file:///store/abc.model")
    assert decode_descriptor(encode_descriptor(d)) == d


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"version": 0}, "version"),
        ({"format": "pickle"}, "format"),
        ({"sha256": "xyz"}, "sha256"),
        ({"name": "bad name"}, "name"),
        ({"data": None}, "exactly one of"),
        ({"location": "http://x/y"}, "location"),
        ({"signature": "c2ln"}, "together"),
        ({"format": "python"}, "entrypoint"),
    ],
)
def test_invalid_descriptors_are_refused_on_the_way_out(change: dict, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        encode_descriptor(descriptor(**change))


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b"{}",
        orjson.dumps({**descriptor_to_json(descriptor()), "data": "!!!not base64"}),
        orjson.dumps({**descriptor_to_json(descriptor()), "version": "3"}),
        orjson.dumps({**descriptor_to_json(descriptor()), "schema": {"inputs": 1}}),
    ],
)
def test_invalid_descriptor_bytes_raise_a_one_line_decode_error(raw: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode_descriptor(raw)
    assert "\n" not in str(info.value)


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    raw = orjson.dumps({**descriptor_to_json(descriptor()), "future": 1})
    assert decode_descriptor(raw) == descriptor()


def deployment(**changes: object) -> Deployment:
    d = Deployment(
        service="fraud",
        models=(
            LiveModel(ModelRef("gbm", 3), Role.CHAMPION, 30, 0.9),
            LiveModel(ModelRef("rules", 1), Role.CHALLENGER),
            LiveModel(ModelRef("tiny", 2), Role.CANARY, None, 0.1),
        ),
        policy=Policy(PolicyKind.CONSENSUS, ("gbm", "rules"), 2, "mean"),
        deadline_ms=40,
        fallback=Fallback(({"name": "label", "datatype": "INT64", "shape": [1], "data": [0]},)),
        revision=7,
        reason="retrained",
        created_at=1700000000000,
        require_signature=True,
        trusted_keys={"0123456789abcdef": "a2V5"},
        allow_python=True,
        partitions=8,
    )
    return dataclasses.replace(d, **changes)  # type: ignore[arg-type]


def test_deployment_round_trip_keeps_every_field() -> None:
    assert decode_deployment(encode_deployment(deployment())) == deployment()
    plain = Deployment("fraud", (LiveModel(ModelRef("gbm", 1), Role.CHAMPION),))
    assert decode_deployment(encode_deployment(plain)) == plain


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"models": ()}, "models"),
        ({"models": (LiveModel(ModelRef("a", 1), Role.CHALLENGER),)}, "exactly one champion"),
        (
            {
                "models": (
                    LiveModel(ModelRef("a", 1), Role.CHAMPION),
                    LiveModel(ModelRef("a", 1), Role.CHALLENGER),
                )
            },
            "live once",
        ),
        ({"deadline_ms": 0}, "deadline_ms"),
        ({"policy": Policy(combine="median")}, "combine"),
    ],
)
def test_invalid_deployments_are_refused(change: dict, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        encode_deployment(deployment(**change))
