"""The record on ``<service>.results`` (and on a request's ``reply_to``): the answer given.

Wire format (JSON, key = the request id)::

    {
      "request_id": "0f8c...", "service": "fraud",
      "policy": "preference",
      "model": "gbm", "version": 3,      the chosen answer's model (null on fallback/miss)
      "outputs": [...],                  the answer (null with an error)
      "error": null,                     e.g. "deadline missed: no model answered in 50 ms"
      "fallback": false,                 true when the service's fallback answered
      "deadline": 1763790000050, "deadline_met": true,
      "answers": ["gbm@3", "lr@2"],      models that answered in time
      "late": ["mlp@1"],                 models that answered after the decision
      "missing": [],                     live models that had not answered at decision time
      "decided_in_ms": 3.2,              from the request's sent_at (else event_time)
      "decided_at": 1763790000004
    }

The *first* record per request id is the answer. When models answer after the decision,
the rendezvous later writes a second record with the same request id, ``late`` filled
and the header ``x-modelstream-late: 1``; it goes to ``results`` only, never to
``reply_to``, so readers that want only answers skip records with that header.
"""

from __future__ import annotations

import msgspec

from modelstream.wire import codec
from modelstream.wire.tensors import Tensor, well_formed

_KIND = "result"


class Result(msgspec.Struct, frozen=True, gc=False):
    """The one answer given for a request, and how it was chosen (a frozen ``Struct``,
    as :class:`~modelstream.wire.tensors.Tensor` says why)."""

    request_id: str
    service: str
    policy: str
    outputs: tuple[Tensor, ...] | None
    deadline: int
    decided_at: int
    model: str | None = None
    version: int | None = None
    error: str | None = None
    fallback: bool = False
    deadline_met: bool = True
    answers: tuple[str, ...] = ()
    late: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    decided_in_ms: float = 0.0

    @property
    def ref(self) -> str | None:
        return None if self.model is None else f"{self.model}@{self.version}"

    def encode(self) -> bytes:
        return codec.encode(self)


_DECODER = msgspec.json.Decoder(Result)


def decode_result(data: bytes) -> Result:
    """Decode and validate a result record; raises ``DecodeError`` saying what is wrong."""
    result = codec.typed(data, _DECODER)
    if result is not None and (result.outputs is None or well_formed(result.outputs)):
        return result
    return _decode_checked(data)


def _decode_checked(data: bytes) -> Result:
    obj = codec.loads(data, _KIND)
    fallback = obj.get("fallback", False)
    deadline_met = obj.get("deadline_met", True)
    return Result(
        request_id=codec.field(obj, "request_id", str, _KIND),
        service=codec.field(obj, "service", str, _KIND),
        policy=codec.field(obj, "policy", str, _KIND),
        outputs=codec.tensors(obj, "outputs", _KIND),
        deadline=codec.field(obj, "deadline", int, _KIND),
        decided_at=codec.field(obj, "decided_at", int, _KIND),
        model=codec.optional(obj, "model", str, _KIND),
        version=codec.optional(obj, "version", int, _KIND),
        error=codec.optional(obj, "error", str, _KIND),
        fallback=bool(fallback),
        deadline_met=bool(deadline_met),
        answers=codec.strings(obj, "answers", _KIND),
        late=codec.strings(obj, "late", _KIND),
        missing=codec.strings(obj, "missing", _KIND),
        decided_in_ms=codec.number(obj, "decided_in_ms", _KIND),
    )
