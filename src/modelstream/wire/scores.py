"""The record on ``<service>.scores``: one model's answer to one request.

Wire format (JSON, key = the request id, so a request's scores share its partition)::

    {
      "request_id": "0f8c...",
      "model": "gbm", "version": 3, "role": "champion",
      "outputs": [{"name": "label", "datatype": "INT64", "shape": [1], "data": [1]}],
      "error": null,                   a message instead of outputs when scoring failed
      "latency_ms": 0.41,              time spent in the model for this request's batch
      "batch_size": 16,
      "scored_at": 1763790000003       ms, wall clock of the scorer
    }
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from modelstream.errors import DecodeError
from modelstream.wire import codec
from modelstream.wire.tensors import Tensor, well_formed

_KIND = "score"


class Score(msgspec.Struct, frozen=True, gc=False):
    """One model version's answer (or error) for one request (a frozen ``Struct``, as
    :class:`~modelstream.wire.tensors.Tensor` says why)."""

    request_id: str
    model: str
    version: int
    outputs: tuple[Tensor, ...] | None
    error: str | None
    latency_ms: float
    scored_at: int
    # Not empty when decoded by type: the careful decoder reads "" as "champion".
    role: Annotated[str, msgspec.Meta(min_length=1)] = "champion"
    batch_size: int = 1

    @property
    def ref(self) -> str:
        """``name@version`` of the model that answered."""
        return f"{self.model}@{self.version}"

    @property
    def ok(self) -> bool:
        return self.error is None and self.outputs is not None

    def encode(self) -> bytes:
        return codec.encode(self)


_DECODER = msgspec.json.Decoder(Score)


def decode_score(data: bytes) -> Score:
    """Decode and validate a score record; raises ``DecodeError`` saying what is wrong."""
    score = codec.typed(data, _DECODER)
    if score is not None and (
        well_formed(score.outputs) if score.outputs is not None else score.error is not None
    ):
        return score
    return _decode_checked(data)


def _decode_checked(data: bytes) -> Score:
    obj = codec.loads(data, _KIND)
    outputs = codec.tensors(obj, "outputs", _KIND)
    error = codec.optional(obj, "error", str, _KIND)
    if outputs is None and error is None:
        raise DecodeError("score record needs either 'outputs' or 'error'")
    return Score(
        request_id=codec.field(obj, "request_id", str, _KIND),
        model=codec.field(obj, "model", str, _KIND),
        version=codec.field(obj, "version", int, _KIND),
        outputs=outputs,
        error=error,
        latency_ms=codec.number(obj, "latency_ms", _KIND),
        scored_at=codec.field(obj, "scored_at", int, _KIND),
        role=codec.optional(obj, "role", str, _KIND) or "champion",
        batch_size=int(codec.number(obj, "batch_size", _KIND, 1)),
    )
