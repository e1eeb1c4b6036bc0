"""Every topic decoder, fed random bytes, random JSON and near-valid records, raises only
``DecodeError``: the one exception the roles catch to dead-letter a record and go on.

``tests/wire/test_records.py`` already fuzzes the request, score and result decoders with
random bytes, random JSON and records of random fields; here the same three get the
*near-valid* treatment (a real record with fields, nested ones too, replaced by values of
the wrong type or removed), and every other decoder gets all three.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelstream.backplane.records import Record
from modelstream.errors import DecodeError
from modelstream.features.aggregates import Count, Mean
from modelstream.features.checkpoint import decode_entry, decode_marker
from modelstream.features.definitions import Feature, FeatureSet, Tumbling
from modelstream.features.records import EventDecoder, request_record
from modelstream.features.sketches import Distinct
from modelstream.models.codec import (
    decode_deployment,
    decode_descriptor,
    deployment_to_json,
    descriptor_to_json,
)
from modelstream.models.deployment import Deployment, Fallback, LiveModel, Policy, PolicyKind, Role
from modelstream.models.descriptor import Lineage, ModelDescriptor, TrainingSpan
from modelstream.models.integrity import sha256_hex
from modelstream.models.loaders.common import classifier_schema
from modelstream.models.refs import ModelRef
from modelstream.monitoring.alerts import Alert, AlertKind, decode_alert
from modelstream.scoring.events import ModelEvent, decode_model_event
from modelstream.wire.labels import Label, decode_label
from modelstream.wire.requests import InferenceRequest, decode_request
from modelstream.wire.results import Result, decode_result
from modelstream.wire.scores import Score, decode_score
from modelstream.wire.tensors import Tensor

Decoder = Callable[[bytes], object]

X = Tensor("input", "FP32", (1, 2), (0.5, 1.5))
MODEL_BYTES = b"\x00model\xff"

FEATURES = FeatureSet(
    "trucks",
    "1",
    [
        Feature("temp_mean", field="temp", agg=Mean(), window=Tumbling(100)),
        Feature("events", agg=Count(), window=Tumbling(100)),
        Feature("drivers", field="driver", agg=Distinct(), window=Tumbling(100)),
    ],
)
# The same features with the entity and the time read from the event's fields.
FEATURES_BY_FIELD = FeatureSet(
    "trucks", "2", FEATURES.features, entity_field="truck", time_field="t"
)


def _events(feature_set: FeatureSet) -> Decoder:
    decoder = EventDecoder(feature_set)

    def decode(data: bytes) -> object:
        return decoder.decode(Record("trucks.events", 0, 7, 1_000, b"truck-1", data))

    return decode


REQUEST = InferenceRequest(
    "r1",
    "fraud",
    1000,
    1050,
    (X,),
    reply_to="fraud.replies.gw",
    entity="truck-7",
    parameters={"deadline_ms": 50},
    features={"temp_mean": 70.5},
    target="gbm@2",
)
DESCRIPTOR = ModelDescriptor(
    service="fraud",
    name="gbm",
    version=3,
    format="onnx",
    sha256=sha256_hex(MODEL_BYTES),
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
    data=MODEL_BYTES,
    size=len(MODEL_BYTES),
)
DEPLOYMENT = Deployment(
    service="fraud",
    models=(
        LiveModel(ModelRef("gbm", 3), Role.CHAMPION, 30, 0.9),
        LiveModel(ModelRef("rules", 1), Role.CHALLENGER),
    ),
    policy=Policy(PolicyKind.CONSENSUS, ("gbm", "rules"), 2, "mean"),
    deadline_ms=40,
    fallback=Fallback(({"name": "label", "datatype": "INT64", "shape": [1], "data": [0]},)),
    revision=7,
    trusted_keys={"0123456789abcdef": "a2V5"},
    partitions=8,
)

# name -> (decoder, a valid record as JSON): every decoder of a topic some role reads.
DECODERS: dict[str, tuple[Decoder, dict[str, Any]]] = {
    "request": (decode_request, orjson.loads(REQUEST.encode())),
    "score": (
        decode_score,
        orjson.loads(Score("r1", "gbm", 3, (X,), None, 0.4, 2000, role="challenger").encode()),
    ),
    "result": (
        decode_result,
        orjson.loads(
            Result(
                "r1",
                "fraud",
                "preference",
                (X,),
                1050,
                1003,
                model="gbm",
                version=3,
                answers=("gbm@3",),
                missing=("lr@1",),
                late=("mlp@1",),
                decided_in_ms=2.5,
            ).encode()
        ),
    ),
    # the featurizer's changelog, read whole by restore: an entity record and a marker
    "changelog entry": (
        decode_entry,
        {
            "p": 1,
            "epoch": 4,
            "state": {"w": [[[100, [2, 141.0]]], [[100, [2]]]], "f": [[100, 0, [70.5]], None]},
            "prev": {"epoch": 3, "state": {"w": [[], []], "f": [None, None]}},
        },
    ),
    "changelog marker": (
        decode_marker,
        {"epoch": 4, "offset": 17, "meta": {"wm": 90, "max_ts": 95, "late": 1}},
    ),
    "label": (
        decode_label,
        orjson.loads(Label("fraud", 1, 2000, request_id="r1", source="ops").encode()),
    ),
    "descriptor": (decode_descriptor, descriptor_to_json(DESCRIPTOR)),
    "deployment": (decode_deployment, deployment_to_json(DEPLOYMENT)),
    "alert": (
        decode_alert,
        Alert(
            "fraud",
            AlertKind.LATENCY,
            "gbm",
            "p99_ms",
            12.0,
            10.0,
            {"from": 1, "to": 2},
            "p99 above 10 ms",
            3000,
        ).to_json(),
    ),
    "model_event": (
        decode_model_event,
        ModelEvent("swapped", "fraud", "gbm", 3, previous=2, timings_ms={"load": 1.5}).to_json(),
    ),
    "event": (_events(FEATURES), {"temp": 71.5, "driver": "ana"}),
    "event_by_field": (_events(FEATURES_BY_FIELD), {"truck": "t-1", "t": 5, "temp": 1.0}),
    # A request riding the events topic is read by the same request decoder.
    "events_request": (decode_request, orjson.loads(request_record(REQUEST).value)),
}

# tests/wire/test_records.py feeds these random bytes and random JSON already.
FUZZED_IN_TESTS_WIRE = frozenset({"request", "score", "result", "events_request"})

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _dumps(obj: Any) -> bytes:
    # The standard library writes what orjson will not: integers beyond 64 bits, Infinity.
    return json.dumps(obj).encode()


def _decode_or_refuse(decode: Decoder, data: bytes) -> None:
    """``decode(data)`` either returns or raises ``DecodeError``: anything else fails."""
    with contextlib.suppress(DecodeError):
        decode(data)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (dict keys and list indexes) to a value inside ``obj``."""
    out: list[tuple[Any, ...]] = []
    items = (
        obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    )
    for key, value in items:
        out.append((*prefix, key))
        out.extend(_paths(value, (*prefix, key)))
    return out


def _mutate(obj: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    """A copy of ``obj`` with the value at ``path`` replaced by ``value`` (or removed)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(obj, dict):
        copy = dict(obj)
        if delete and not rest:
            copy.pop(head, None)
        else:
            copy[head] = _mutate(obj[head], rest, value, delete)
        return copy
    copy_list = list(obj)
    if delete and not rest:
        del copy_list[head]
    else:
        copy_list[head] = _mutate(obj[head], rest, value, delete)
    return copy_list


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=512) | json_values.map(_dumps))
def test_every_decoder_refuses_random_bytes_and_json_with_decode_error(data: bytes) -> None:
    for name, (decode, _) in DECODERS.items():
        if name not in FUZZED_IN_TESTS_WIRE:
            _decode_or_refuse(decode, data)


# Replacements favour scalars of the wrong type (a string where a number goes, ...).
replacements = st.one_of(
    st.text(max_size=8),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.booleans(),
    st.none(),
    json_values,
)


@pytest.mark.parametrize("name", sorted(DECODERS))
@settings(max_examples=250, deadline=None)
@given(draw=st.data())
def test_every_decoder_refuses_near_valid_records_with_decode_error(
    name: str, draw: st.DataObject
) -> None:
    decode, valid = DECODERS[name]
    decode(orjson.dumps(valid))  # the starting point is a record the decoder accepts
    record: Any = valid
    for _ in range(draw.draw(st.integers(1, 3), label="changes")):
        paths = _paths(record)
        if not paths:
            break
        path = draw.draw(st.sampled_from(paths), label="path")
        delete = draw.draw(st.booleans(), label="delete")
        record = _mutate(record, path, draw.draw(replacements, label="value"), delete)
    _decode_or_refuse(decode, _dumps(record))


def test_a_record_above_the_size_limit_is_refused_by_every_decoder() -> None:
    from modelstream.wire.codec import MAX_RECORD_BYTES

    for name, (decode, valid) in DECODERS.items():
        huge = orjson.dumps({**valid, "padding": "x" * (MAX_RECORD_BYTES + 1)})
        try:
            decode(huge)
        except DecodeError as exc:
            assert "exceeds" in str(exc), name
        else:
            raise AssertionError(f"the {name} decoder accepted a record of {len(huge)} bytes")
