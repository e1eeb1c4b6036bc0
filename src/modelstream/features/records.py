"""The featurizer's topology and the records it reads and writes.

Topology of a service ``S`` with a feature set::

    producers --events, key = entity---------------+
    gateway ----requests, key = entity, header      +--> S.events --> featurizer (S.featurizer)
                x-modelstream-kind: request---------+    one log per       |
    featurizer --watermark markers (idle)-----------+    entity partition  |
                                                                           +--> S.requests (by id,
                                                                           |      features filled)
                                                                           +--> S.features (results)
                                                                           +--> S.late (+ reason)
                                                                           +--> S.features-changelog

Why requests ride the events topic: a request is a point in its entity's event stream.
Produced onto the same partitioned log as the entity's events (both keyed by entity),
its position relative to the events is fixed by the log itself, so the features it gets
depend only on the log: a featurizer restarted after a crash re-derives exactly the same
values, and the offline builder replaying the archived log computes them too (no
train/serve skew, no race between two topics). The featurizer then re-keys the
enriched request by its id onto ``S.requests``, where the scorers and the rendezvous
read it co-partitioned with ``S.scores``. Requests without an entity (keyed by id) pass
through with empty features.

Idle partitions: a partition that sees no event for ``idle_timeout_ms`` of processing
time gets a *watermark marker* appended by the featurizer (empty value, header
``x-modelstream-watermark``). Being on the log, the marker is replayed after a crash
and by the offline builder, so even this one use of processing time is reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from modelstream.backplane.records import OutRecord, Record
from modelstream.errors import DecodeError
from modelstream.features.definitions import FeatureSet
from modelstream.features.plan import WindowResult, nan_to_none
from modelstream.features.sketches import Distinct
from modelstream.wire.codec import MAX_RECORD_BYTES
from modelstream.wire.requests import InferenceRequest
from modelstream.wire.topics import ServiceTopics

KIND_HEADER = "x-modelstream-kind"
REQUEST_KIND = b"request"
WATERMARK_HEADER = "x-modelstream-watermark"
REASON_HEADER = "x-reason"


def events_topic(service: str) -> str:
    return ServiceTopics(service).events


def features_topic(service: str) -> str:
    return ServiceTopics(service).features


def changelog_topic(service: str) -> str:
    return ServiceTopics(service).features_changelog


def request_record(request: InferenceRequest) -> OutRecord:
    """The record a gateway produces onto ``S.events`` for a service with a feature set."""
    key = (request.entity or request.id).encode()
    headers = ((KIND_HEADER, REQUEST_KIND),)
    return OutRecord(request.encode(), key, headers, request.event_time)


def watermark_record(partition: int, watermark: int) -> OutRecord:
    return OutRecord(b"", None, ((WATERMARK_HEADER, str(watermark).encode()),), None, partition)


def late_record(record: Record, reason: str) -> OutRecord:
    """A copy of a late event for ``S.late``: same key, value and time, plus the reason."""
    headers = (
        *record.headers,
        ("x-source-partition", str(record.partition).encode()),
        ("x-source-offset", str(record.offset).encode()),
        (REASON_HEADER, reason.encode("utf-8", "replace")[:4096]),
    )
    return OutRecord(record.value, record.key, headers, record.timestamp)


def result_json(result: WindowResult) -> dict[str, Any]:
    return {
        "entity": result.entity,
        "window": result.window,
        "start": result.start,
        "end": result.end,
        "kind": result.kind,
        "values": dict(zip(result.values, nan_to_none(result.values.values()), strict=True)),
    }


def result_record(result: WindowResult) -> OutRecord:
    return OutRecord(orjson.dumps(result_json(result)), result.entity.encode(), (), result.end)


class EventDecoder:
    """Reads ``(entity, event time, values)`` out of an event record of a feature set.

    The value is a JSON object. The entity is its ``entity_field`` (or the record key),
    the event time its ``time_field`` in ms (or the record timestamp). Only the fields
    the features use are kept; a numeric feature's field must hold a number (or be
    absent or null). Raises :class:`DecodeError` saying what is wrong.
    """

    def __init__(self, feature_set: FeatureSet) -> None:
        self._entity_field = feature_set.entity_field
        self._time_field = feature_set.time_field
        numeric = {f.field for f in feature_set.features if not isinstance(f.agg, Distinct)}
        self._fields = tuple((name, name in numeric) for name in feature_set.fields)

    def decode(self, record: Record) -> tuple[str, int, dict[str, Any]]:
        if len(record.value) > MAX_RECORD_BYTES:
            # The same bound as every other topic's records: not parsed, dead-lettered.
            raise DecodeError(
                f"event record of {len(record.value)} bytes exceeds {MAX_RECORD_BYTES} bytes"
            )
        try:
            obj = orjson.loads(record.value)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"event record is not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise DecodeError("event record must be a JSON object")
        key = None if record.key is None else record.key.decode("utf-8", "replace")
        return self.from_mapping(obj, key, record.timestamp)

    def from_mapping(
        self, obj: Mapping[str, Any], key: str | None, timestamp: int | None
    ) -> tuple[str, int, dict[str, Any]]:
        """The same reading for an already parsed event (offline rows)."""
        if self._entity_field is not None:
            raw_entity = obj.get(self._entity_field)
            if not isinstance(raw_entity, str | int) or isinstance(raw_entity, bool):
                raise DecodeError(f"event field {self._entity_field!r} (the entity) is missing")
            entity = str(raw_entity)
        elif key is not None:
            entity = key
        else:
            raise DecodeError("event record has no key (the entity); key events by entity")
        t = timestamp if self._time_field is None else obj.get(self._time_field)
        if not isinstance(t, int) or isinstance(t, bool):
            raise DecodeError(f"event time {self._time_field!r} must be an integer of ms")
        values: dict[str, Any] = {}
        for name, numeric in self._fields:
            v = obj.get(name)
            if v is None:
                continue
            kind = type(v)
            if kind is float or kind is int:
                values[name] = v
            elif numeric:
                raise DecodeError(f"event field {name!r} must be a number, got {kind.__name__}")
            else:
                values[name] = v
        return entity, t, values
