"""Re-send archived requests: compare a new model on yesterday's traffic.

:func:`replay` reads the requests of a service whose event time is in ``[start, end)``
from the archive (deduplicated), and produces them, in event-time order, onto the
requests topic of ``to_service`` (default: the same service). Each re-sent request:

* gets a new id, :func:`replay_request_id` of the old id and the target service --
  deterministic, so a second replay of the same window produces the same ids and anyone
  can map a replayed request back to its original (and to the original's label);
* keeps its entity, event time, inputs, features, parameters and target;
* has its deadline shifted to now: the original budget ``deadline - sent_at`` (or
  ``- event_time`` without ``sent_at``), at least 1 ms, counted from the moment it is
  re-sent, which also becomes its ``sent_at``;
* has no ``reply_to`` (no gateway waits for it), and carries the header
  ``x-replay-of: <old id>``.

The record timestamp is the event time, as for any request.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from modelstream.archive.reader import ArchiveReader
from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord, now_ms
from modelstream.errors import ConfigurationError
from modelstream.wire.requests import InferenceRequest
from modelstream.wire.tensors import tensor_from_json
from modelstream.wire.topics import ServiceTopics

REPLAY_HEADER = "x-replay-of"


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a replay sent."""

    service: str
    to_service: str
    sent: int
    seconds: float


def replay_request_id(old_id: str, to_service: str) -> str:
    """The id a replay onto ``to_service`` gives the request ``old_id`` (deterministic)."""
    digest = hashlib.sha256(f"{to_service}\x00{old_id}".encode()).hexdigest()
    return f"replay-{digest[:32]}"


def _ms(value: Any) -> int | None:
    if value is None or pd.isna(value):
        return None
    return int(pd.Timestamp(value).value // 1_000_000)


def _replayed(row: Mapping[Any, Any], to_service: str, now: int) -> InferenceRequest:
    """The request to re-send for one archived requests row (see the module)."""
    event_time = _ms(row["event_time"])
    deadline = _ms(row["deadline"])
    if event_time is None or deadline is None:
        raise ConfigurationError(f"archived request {row['request_id']} lacks its times")
    sent_at = _ms(row["sent_at"])
    budget = max(1, deadline - (sent_at if sent_at is not None else event_time))
    features = row["features"]
    parameters = json.loads(row["parameters"]) if isinstance(row["parameters"], str) else {}
    return InferenceRequest(
        id=replay_request_id(str(row["request_id"]), to_service),
        service=to_service,
        event_time=event_time,
        deadline=now + budget,
        inputs=tuple(tensor_from_json(t) for t in json.loads(row["inputs"])),
        entity=None if pd.isna(row["entity"]) else str(row["entity"]),
        parameters=parameters,
        features=None if features is None else dict(features),
        target=None if pd.isna(row["target"]) else str(row["target"]),
        sent_at=now,
    )


def replay(
    backplane: Backplane,
    reader: ArchiveReader,
    service: str,
    start: datetime | None,
    end: datetime | None,
    *,
    to_service: str | None = None,
    rate: float | None = None,
    batch: int = 500,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], int] = now_ms,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayReport:
    """Re-send the archived requests of ``[start, end)``; at most ``rate`` per second.

    ``progress(sent, total)`` is called after every batch. Returns once every request is
    durable on the target topic.
    """
    if rate is not None and rate <= 0:
        raise ConfigurationError("--rate must be a positive number of requests per second")
    target = ServiceTopics(to_service or service)
    frame = reader.requests(service, start, end, wide=False)
    frame = frame.sort_values(["event_time", "request_id"], kind="stable")
    rows = frame.to_dict("records")
    size = batch if rate is None else max(1, min(batch, int(rate)))
    began = clock()
    sent = 0
    for first in range(0, len(rows), size):
        chunk = rows[first : first + size]
        stamp = now()
        out = []
        for row in chunk:
            request = _replayed(row, target.service, stamp)
            out.append(
                OutRecord(
                    request.encode(),
                    request.key,
                    ((REPLAY_HEADER, str(row["request_id"]).encode()),),
                    request.event_time,
                )
            )
        backplane.produce(target.requests, out)
        sent += len(out)
        if progress is not None:
            progress(sent, len(rows))
        if rate is not None:
            ahead = sent / rate - (clock() - began)
            if ahead > 0:
                sleep(ahead)
    return ReplayReport(service, target.service, sent, clock() - began)
