"""Request, score and result records: round trips, clear errors, and fuzzed decoders."""

from __future__ import annotations

import contextlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelstream.errors import DecodeError
from modelstream.wire.requests import InferenceRequest, decode_request
from modelstream.wire.results import Result, decode_result
from modelstream.wire.scores import Score, decode_score
from modelstream.wire.tensors import Tensor
from modelstream.wire.topics import ServiceTopics

X = Tensor("input", "FP32", (1, 2), (0.5, 1.5))


def test_request_round_trip_keeps_every_field() -> None:
    request = InferenceRequest(
        id="r1",
        service="fraud",
        event_time=1000,
        deadline=1050,
        inputs=(X,),
        reply_to="fraud.replies.gw",
        entity="truck-7",
        parameters={"deadline_ms": 50},
        features={"temp_mean": 70.5},
        target="gbm@2",
        sent_at=1001,
    )
    assert decode_request(request.encode()) == request
    assert request.key == b"r1"
    assert request.remaining_ms(now=1040) == 10


def test_score_and_result_round_trip() -> None:
    score = Score("r1", "gbm", 3, (X,), None, 0.4, 2000, role="challenger", batch_size=16)
    assert decode_score(score.encode()) == score
    assert score.ref == "gbm@3"
    failed = Score("r1", "gbm", 3, None, "model raised ValueError", 0.1, 2000)
    assert not decode_score(failed.encode()).ok
    result = Result(
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
    )
    assert decode_result(result.encode()) == result
    assert result.ref == "gbm@3"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"id": "r"}', "non-empty 'inputs'"),
        (
            orjson.dumps(
                {"id": 1, "service": "s", "event_time": 1, "deadline": 2, "inputs": [X.to_json()]}
            ),
            "'id' must be str",
        ),
        (
            orjson.dumps(
                {
                    "id": "r",
                    "service": "s",
                    "event_time": True,
                    "deadline": 2,
                    "inputs": [X.to_json()],
                }
            ),
            "'event_time' must be int",
        ),
        (
            orjson.dumps(
                {
                    "id": "r",
                    "service": "s",
                    "event_time": 1,
                    "deadline": 2,
                    "inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1]}],
                }
            ),
            "needs 3 values",
        ),
    ],
)
def test_bad_requests_name_the_problem(payload: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_request(payload)


def test_a_score_without_outputs_or_error_is_refused() -> None:
    payload = orjson.dumps({"request_id": "r", "model": "m", "version": 1, "scored_at": 1})
    with pytest.raises(DecodeError, match="either 'outputs' or 'error'"):
        decode_score(payload)


def test_service_topics_follow_the_design() -> None:
    topics = ServiceTopics("fraud")
    assert topics.requests == "fraud.requests"
    assert topics.dead_letter == "fraud.dead-letter"
    assert topics.replies("gw-1") == "fraud.replies.gw-1"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=256) | json_values.map(orjson.dumps))
def test_decoders_raise_only_decode_error_on_any_input(data: bytes) -> None:
    for decode in (decode_request, decode_score, decode_result):
        with contextlib.suppress(DecodeError):
            decode(data)


record_like = st.fixed_dictionaries(
    {},
    optional={
        name: json_values
        for name in (
            "id",
            "service",
            "event_time",
            "deadline",
            "inputs",
            "reply_to",
            "entity",
            "parameters",
            "features",
            "request_id",
            "model",
            "version",
            "outputs",
            "error",
            "scored_at",
            "policy",
            "decided_at",
            "answers",
            "late",
            "missing",
            "latency_ms",
        )
    },
)


@settings(max_examples=300, deadline=None)
@given(obj=record_like)
def test_decoders_refuse_wrong_field_types_with_decode_error(obj: dict[str, object]) -> None:
    data = orjson.dumps(obj)
    for decode in (decode_request, decode_score, decode_result):
        with contextlib.suppress(DecodeError):
            decode(data)
