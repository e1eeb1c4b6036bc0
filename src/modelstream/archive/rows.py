"""Records of a service's topics as archive rows (the columns of :mod:`.layout`).

:func:`to_row` is the one entry point: it decodes a record of one kind with the wire
codec and flattens it. It raises :class:`~modelstream.errors.DecodeError` for anything
that cannot be read, so the archiver can dead-letter the record and carry on.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson

from modelstream.archive.layout import utc_date
from modelstream.backplane.records import Record
from modelstream.errors import DecodeError
from modelstream.wire import codec
from modelstream.wire.labels import decode_label
from modelstream.wire.requests import decode_request
from modelstream.wire.results import decode_result
from modelstream.wire.scores import decode_score
from modelstream.wire.tensors import Tensor

# Output names taken to be class probabilities (sklearn-onnx, the OIP convention, ours).
PROBABILITY_OUTPUTS = frozenset({"probabilities", "probability", "proba", "output_probability"})


def _single_row(tensor: Tensor) -> bool:
    return len(tensor.shape) <= 1 or tensor.shape[0] == 1


def _floats(tensor: Tensor) -> list[float] | None:
    """The tensor's values as floats, or ``None`` if it is not numeric."""
    if tensor.datatype == "BYTES":
        return None
    try:
        return [float(v) for v in tensor.data]
    except (TypeError, ValueError):
        # Decoders check counts, not value types; a bad value only loses the typed column.
        return None


def _text(value: Any) -> str:
    return str(int(value)) if isinstance(value, bool) else str(value)


def _scalar(value: Any) -> tuple[float | None, str | None]:
    """A value as (number or None, text)."""
    if isinstance(value, bool | int | float):
        return float(value), _text(value)
    if value is None:
        return None, None
    return None, str(value)


def prediction_of(
    outputs: tuple[Tensor, ...] | None,
) -> tuple[float | None, str | None, list[float] | None]:
    """``(prediction, prediction_text, probabilities)`` of a model's outputs (see layout)."""
    if not outputs:
        return None, None, None
    probabilities: list[float] | None = None
    for tensor in outputs:
        if tensor.name.lower() in PROBABILITY_OUTPUTS and _single_row(tensor):
            probabilities = _floats(tensor)
            break
    for tensor in outputs:
        if tensor.name.lower() not in PROBABILITY_OUTPUTS and tensor.data:
            number, text = _scalar(tensor.data[0])
            return number, text, probabilities
    if probabilities:
        best = max(range(len(probabilities)), key=probabilities.__getitem__)
        return float(best), str(best), probabilities
    return None, None, probabilities


def _json_text(tensors: tuple[Tensor, ...] | None) -> str | None:
    return None if tensors is None else orjson.dumps([t.to_json() for t in tensors]).decode()


def _src(record: Record) -> dict[str, Any]:
    return {"src_partition": record.partition, "src_offset": record.offset}


def request_row(record: Record) -> tuple[date, dict[str, Any]]:
    req = decode_request(record.value)
    x: list[float] | None = None
    if all(_single_row(t) for t in req.inputs):
        numeric = [_floats(t) for t in req.inputs if t.datatype != "BYTES"]
        if numeric and all(values is not None for values in numeric):
            x = [v for values in numeric if values is not None for v in values]
    row = {
        "request_id": req.id,
        "entity": req.entity,
        "event_time": req.event_time,
        "deadline": req.deadline,
        "sent_at": req.sent_at,
        "reply_to": req.reply_to,
        "target": req.target,
        "inputs": _json_text(req.inputs),
        "x": x,
        "features": None if req.features is None else list(req.features.items()),
        "parameters": codec.dumps(dict(req.parameters)).decode() if req.parameters else None,
        **_src(record),
    }
    return utc_date(req.event_time), row


def score_row(record: Record) -> tuple[date, dict[str, Any]]:
    score = decode_score(record.value)
    prediction, text, probabilities = prediction_of(score.outputs)
    row = {
        "request_id": score.request_id,
        "model": score.model,
        "version": score.version,
        "role": score.role,
        "outputs": _json_text(score.outputs),
        "prediction": prediction,
        "prediction_text": text,
        "probabilities": probabilities,
        "error": score.error,
        "latency_ms": score.latency_ms,
        "batch_size": score.batch_size,
        "scored_at": score.scored_at,
        **_src(record),
    }
    return utc_date(score.scored_at), row


def result_row(record: Record) -> tuple[date, dict[str, Any]]:
    result = decode_result(record.value)
    prediction, text, _ = prediction_of(result.outputs)
    row = {
        "request_id": result.request_id,
        "policy": result.policy,
        "model": result.model,
        "version": result.version,
        "outputs": _json_text(result.outputs),
        "prediction": prediction,
        "prediction_text": text,
        "error": result.error,
        "fallback": result.fallback,
        "deadline": result.deadline,
        "deadline_met": result.deadline_met,
        "answers": list(result.answers),
        "late": list(result.late),
        "missing": list(result.missing),
        "decided_in_ms": result.decided_in_ms,
        "decided_at": result.decided_at,
        **_src(record),
    }
    return utc_date(result.decided_at), row


def label_row(record: Record) -> tuple[date, dict[str, Any]]:
    label = decode_label(record.value)
    number, text = _scalar(label.value)
    row = {
        "request_id": label.request_id,
        "entity": label.entity,
        "event_time": label.event_time,
        "label": number,
        "label_text": text,
        "labelled_at": label.labelled_at,
        "source": label.source,
        **_src(record),
    }
    return utc_date(label.labelled_at), row


def event_row(record: Record) -> tuple[date, dict[str, Any]]:
    try:
        value = record.value.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("events record is not UTF-8 text; the archive keeps text only") from None
    key = None if record.key is None else record.key.decode("utf-8", "replace")
    headers = None
    if record.headers:  # the featurizer's kinds (request, watermark marker) live here
        pairs = [[name, raw.decode("utf-8", "replace")] for name, raw in record.headers]
        headers = orjson.dumps(pairs).decode()
    row = {
        "key": key,
        "timestamp": record.timestamp,
        "value": value,
        "headers": headers,
        **_src(record),
    }
    return utc_date(record.timestamp), row


_ROWS = {
    "requests": request_row,
    "scores": score_row,
    "results": result_row,
    "labels": label_row,
    "events": event_row,
}


def to_row(kind: str, record: Record) -> tuple[date, dict[str, Any]]:
    """The partition date and the archive row of ``record``, a record of ``kind``.

    Raises ``DecodeError`` when the record cannot be read as ``kind``.
    """
    return _ROWS[kind](record)
