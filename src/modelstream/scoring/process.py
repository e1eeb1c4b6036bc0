"""One poll's worth of request records in, score and dead-letter records out.

:func:`score_records` is the pure core of the scorer's loop (no I/O besides the model
call), so the in-process benchmark and the tests drive exactly what the scorer runs.
It answers every decodable request meant for this model exactly once (see
:mod:`modelstream.scoring.scorer` for what each kind of request gets) and returns the
offsets to commit once its records are durable.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from modelstream.backplane.records import (
    LOCAL_MAX_RECORD_BYTES,
    Headers,
    OutRecord,
    Record,
    TopicPartition,
    now_ms,
    record_size,
)
from modelstream.errors import DecodeError, InvalidRequest, SchemaMismatch, ScoringError
from modelstream.scoring.batcher import Arrays, make_batches, request_arrays, split_outputs
from modelstream.scoring.runner import ModelRunner
from modelstream.scoring.slot import ActiveModel
from modelstream.wire.deadletter import dead_letter_record
from modelstream.wire.requests import InferenceRequest, decode_request
from modelstream.wire.scores import Score
from modelstream.wire.tensors import Tensor, array_to_tensor, datatype_of
from modelstream.wire.topics import ServiceTopics

Expired = Literal["error", "score"]


@dataclass(frozen=True, slots=True)
class Scored:
    """A score and its record on the ``scores`` topic."""

    score: Score
    out: OutRecord


@dataclass
class Outcome:
    """What one poll's records produced."""

    scores: list[Scored] = field(default_factory=list)
    dead_letters: list[OutRecord] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    skipped: int = 0  # requests targeted at another model
    batches: list[tuple[int, float]] = field(default_factory=list)  # (requests, ms) per call


def targets(
    request: InferenceRequest, active: ActiveModel, others: frozenset[str] = frozenset()
) -> bool | str:
    """``True`` to score, ``False`` to skip, or an error message for a wrong version.

    ``others`` are targets another lane of the same name answers (its ``name@version``,
    and the bare name when this lane is not the name's own): skipped here.
    """
    if request.target is None:
        return True
    if request.target in others:
        return False
    name, sep, version = request.target.rpartition("@")
    if not sep:
        name, version = request.target, ""
    if name != active.ref.name:
        return False
    if version and version != str(active.ref.version):
        return (
            f"target {request.target} is not serving: {active.ref} is; "
            f"deploy {request.target} or target {active.ref}"
        )
    return True


def _score(
    request: InferenceRequest,
    active: ActiveModel,
    *,
    outputs: tuple[Tensor, ...] | None = None,
    error: str | None = None,
    latency_ms: float = 0.0,
    batch_size: int = 1,
    at: int,
    headers: Headers = (),
    limit: int | None = None,
    partition: int | None = None,
) -> Scored:
    score = Score(
        request_id=request.id,
        model=active.ref.name,
        version=active.ref.version,
        outputs=outputs,
        error=error,
        latency_ms=round(latency_ms, 4),
        scored_at=at,
        role=active.role,
        batch_size=batch_size,
    )
    out = OutRecord(score.encode(), request.key, headers, timestamp=at, partition=partition)
    if limit is not None and outputs is not None and (size := record_size(out)) > limit:
        # A score the backplane would refuse must not stall the partition: the request
        # is answered with what went wrong instead.
        error = (
            f"the output of {active.ref} for this request takes {size} bytes, above the "
            f"backplane's record limit of {limit}: send fewer rows per request, or raise "
            "MODELSTREAM_MAX_RECORD_BYTES"
        )
        return _score(request, active, error=error, latency_ms=latency_ms,
                      batch_size=batch_size, at=at, headers=headers,
                      partition=partition)  # fmt: skip
    return Scored(score, out)


def _tensors(
    rows: Sequence[int], parts: list[Arrays], outputs: Mapping[str, Any]
) -> list[tuple[Tensor, ...]]:
    """Wire tensors per request. Converts each whole output to Python values once
    (``tolist``) and slices those, which is several times cheaper than converting every
    request's slice on its own; the result equals :func:`array_to_tensor` of the slice."""
    if len(parts) == 1:
        return [tuple(array_to_tensor(name, value) for name, value in parts[0].items())]
    per_request: list[list[Tensor]] = [[] for _ in rows]
    for name in parts[0]:
        array = np.asarray(outputs[name])
        if array.dtype.kind in "OUS":  # text: keep the careful general conversion
            for i, part in enumerate(parts):
                per_request[i].append(array_to_tensor(name, part[name]))
            continue
        datatype = datatype_of(array)
        inner = tuple(int(d) for d in array.shape[1:])
        flat_rows = array.reshape(array.shape[0], -1).tolist()
        start = 0
        for i, count in enumerate(rows):
            chunk = flat_rows[start : start + count]
            start += count
            values = tuple(chunk[0]) if count == 1 else tuple(v for row in chunk for v in row)
            per_request[i].append(Tensor(name, datatype, (count, *inner), values))
    return [tuple(ts) for ts in per_request]


def score_records(
    records: Sequence[Record],
    active: ActiveModel,
    runner: ModelRunner,
    topics: ServiceTopics,
    expired: Expired = "error",
    *,
    others: frozenset[str] = frozenset(),
    headers: Headers = (),
    limit: int | None = None,
) -> Outcome:
    """Score ``records`` (requests) with ``active``; see the module docstring.

    ``headers`` go on every score record (the scorer role names itself there). A score
    above ``limit`` bytes (the backplane's ``max_record_bytes``) becomes an error score
    saying so, so that every score this returns can be produced.

    Each score record is placed in the partition number of its request's record, not by
    its key: ``scores`` has the request topic's partition count, so the score meets its
    request at the rendezvous member owning that partition whichever partitioner placed
    the request (and no key is hashed again).
    """
    outcome = Outcome()
    now = now_ms()
    ready: list[tuple[InferenceRequest, Arrays]] = []
    # Keyed by id(): every request decoded here stays alive until the function returns.
    placed: dict[int, int] = {}
    for record in records:
        outcome.offsets[record.topic_partition] = record.offset + 1
        try:
            request = decode_request(record.value)
        except DecodeError as exc:
            outcome.dead_letters.append(
                dead_letter_record(record, str(exc), limit or LOCAL_MAX_RECORD_BYTES)
            )
            continue
        placed[id(request)] = partition = record.partition
        verdict = targets(request, active, others)
        if verdict is False:
            outcome.skipped += 1
            continue
        if isinstance(verdict, str):
            outcome.scores.append(
                _score(request, active, error=verdict, at=now, headers=headers, partition=partition)
            )
            continue
        late = -request.remaining_ms(now)
        if late > 0 and expired == "error":
            message = f"expired: deadline passed {late} ms before scoring; not scored"
            outcome.scores.append(
                _score(request, active, error=message, at=now, headers=headers, partition=partition)
            )
            continue
        try:
            ready.append((request, request_arrays(request, active.schema)))
        except (InvalidRequest, SchemaMismatch) as exc:
            outcome.scores.append(
                _score(
                    request,
                    active,
                    error=f"invalid input: {exc}",
                    at=now,
                    headers=headers,
                    partition=partition,
                )
            )
    for batch in make_batches(ready):
        started = time.perf_counter()
        try:
            outputs, elapsed = runner.run(active.model, batch.inputs)
            parts = split_outputs(batch, outputs)
            tensors = _tensors(batch.rows, parts, outputs)
        except (ScoringError, InvalidRequest) as exc:
            elapsed = (time.perf_counter() - started) * 1000
            outcome.batches.append((batch.size, elapsed))
            at = now_ms()
            for request in batch.requests:
                outcome.scores.append(
                    _score(
                        request,
                        active,
                        error=str(exc),
                        latency_ms=elapsed,
                        batch_size=batch.size,
                        at=at,
                        headers=headers,
                        partition=placed[id(request)],
                    )
                )
            continue
        outcome.batches.append((batch.size, elapsed))
        at = now_ms()
        for request, part in zip(batch.requests, tensors, strict=True):
            outcome.scores.append(
                _score(
                    request,
                    active,
                    outputs=part,
                    latency_ms=elapsed,
                    batch_size=batch.size,
                    at=at,
                    headers=headers,
                    limit=limit,
                    partition=placed[id(request)],
                )
            )
    return outcome
