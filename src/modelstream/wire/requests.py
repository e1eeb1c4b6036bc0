"""The record on ``<service>.requests``: one inference request.

Wire format (JSON, key = the request id as UTF-8, so every record about a request,
its scores and its result, lands in the same partition number)::

    {
      "id": "0f8c...",                  required, unique per request
      "service": "fraud",               required
      "event_time": 1763790000000,      required, ms since the epoch (the data's time)
      "deadline": 1763790000050,        required, absolute ms: answer by then
      "reply_to": "fraud.replies.gw-1", optional topic the answer is also sent to
      "entity": "truck-7",              optional entity key (features, A/B split)
      "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [...]}],
      "parameters": {},                 optional, passed through
      "features": {"temp_mean_5m": 71}, optional, added by the featurizer
      "target": "gbm@3",                optional: only this model answers, no rendezvous
      "sent_at": 1763790000001          optional, ms, when the sender produced it
    }
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import msgspec

from modelstream.backplane.records import now_ms
from modelstream.errors import DecodeError
from modelstream.wire import codec
from modelstream.wire.tensors import Tensor, well_formed

_KIND = "request"


def new_request_id() -> str:
    """A fresh random id of 128 bits as 32 hex digits (as much randomness as a uuid4).

    Drawn from :mod:`random` (seeded from the OS, reseeded in a forked child), not from
    ``os.urandom`` per call: that system call releases the GIL, and under load the
    gateway's event loop then waits a whole switch interval to get it back.
    """
    return f"{random.getrandbits(128):032x}"


class InferenceRequest(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """One request, as every role sees it (a frozen ``Struct``, as
    :class:`~modelstream.wire.tensors.Tensor` says why). Its JSON leaves out the optional
    fields left at their defaults, as the wire format above shows."""

    id: str
    service: str
    event_time: int
    deadline: int
    inputs: tuple[Tensor, ...]
    reply_to: str | None = None
    entity: str | None = None
    parameters: Mapping[str, Any] = msgspec.field(default_factory=dict)
    features: Mapping[str, float] | None = None
    target: str | None = None
    sent_at: int | None = None

    @property
    def key(self) -> bytes:
        return self.id.encode()

    def remaining_ms(self, now: int | None = None) -> int:
        """Milliseconds left until the deadline (negative once it has passed)."""
        return self.deadline - (now_ms() if now is None else now)

    def encode(self) -> bytes:
        return codec.encode(self)


_DECODER = msgspec.json.Decoder(InferenceRequest)


def decode_request(data: bytes) -> InferenceRequest:
    """Decode and validate a request record; raises ``DecodeError`` saying what is wrong."""
    request = codec.typed(data, _DECODER)
    if request is not None and request.inputs and well_formed(request.inputs):
        return request
    return _decode_checked(data)


def _decode_checked(data: bytes) -> InferenceRequest:
    obj = codec.loads(data, _KIND)
    inputs = codec.tensors(obj, "inputs", _KIND)
    if not inputs:
        raise DecodeError("request record needs a non-empty 'inputs' list")
    parameters = obj.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise DecodeError("request field 'parameters' must be an object")
    features = obj.get("features")
    if features is not None and (
        not isinstance(features, dict)
        or not all(isinstance(v, int | float | None) for v in features.values())
    ):
        raise DecodeError("request field 'features' must be an object of numbers")
    return InferenceRequest(
        id=codec.field(obj, "id", str, _KIND),
        service=codec.field(obj, "service", str, _KIND),
        event_time=codec.field(obj, "event_time", int, _KIND),
        deadline=codec.field(obj, "deadline", int, _KIND),
        inputs=inputs,
        reply_to=codec.optional(obj, "reply_to", str, _KIND),
        entity=codec.optional(obj, "entity", str, _KIND),
        parameters=parameters,
        features=features,
        target=codec.optional(obj, "target", str, _KIND),
        sent_at=codec.optional(obj, "sent_at", int, _KIND),
    )
