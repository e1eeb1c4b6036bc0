"""Records on ``<service>.model-events``: what scorers did with model versions.

Wire format (JSON, key = the model name, so one model's events stay in order)::

    {
      "event": "swapped",              "swapped" | "load_failed" | "role_changed" | "waiting"
      "service": "fraud", "model": "gbm",
      "version": 4,                    the version this event is about
      "previous": 3,                   the version serving before (null on a first load)
      "serving": 4,                    the version serving after the event (null: none)
      "role": "champion",
      "error": null,                   for load_failed: what went wrong, for the operator
      "error_type": null,              for load_failed: the exception class name
      "timings_ms": {"fetch": 0.3, "load": 12.1, "validate": 0.1, "warm": 0.8, "total": 13.5},
      "scorer": "host-1234-ab12",      which scorer process reported it
      "at": 1763790000003              ms, wall clock
    }

A ``load_failed`` event means the old version (``serving``) keeps serving. ``waiting``
means a deployed version's descriptor has not been read yet: on Kafka the deployment can
be read before the descriptor published just ahead of it, so it is usually followed by
``swapped``; it is an error only if it persists.

Besides the topic, a scorer reports to an in-process :class:`ScorerObserver` when one
is given (``Serving`` passes the gateway's metrics, so ``/metrics`` shows batch sizes,
batch latencies and swaps of the scorers sharing its process).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord, now_ms
from modelstream.errors import DecodeError
from modelstream.logs import log_recovered
from modelstream.models.refs import ModelRef
from modelstream.wire import codec
from modelstream.wire.topics import ServiceTopics

log = logging.getLogger(__name__)

_KIND = "model event"

SWAPPED = "swapped"
LOAD_FAILED = "load_failed"
ROLE_CHANGED = "role_changed"
WAITING = "waiting"  # deployed, but its descriptor has not been read yet (may be transient)


class ScorerObserver(Protocol):
    """In-process hooks a scorer calls (from its own threads, so they must be cheap and
    thread-safe, and must not raise: an exception is logged and the scorer carries on).

    ``model`` is the model *name* (not the version), so a swap keeps one series.
    """

    def scorer_batch(self, service: str, model: str, size: int, seconds: float) -> None:
        """A micro-batch of ``size`` requests spent ``seconds`` in the model."""

    def model_swapped(self, service: str, model: str) -> None:
        """A version of ``model`` was swapped in (a first load counts too)."""


class _NoObserver:
    def scorer_batch(self, service: str, model: str, size: int, seconds: float) -> None:
        pass

    def model_swapped(self, service: str, model: str) -> None:
        pass


NO_OBSERVER: ScorerObserver = _NoObserver()  # what a scorer reports to without one


@dataclass(frozen=True, slots=True)
class ModelEvent:
    """One scorer lifecycle event about one model version."""

    event: str
    service: str
    model: str
    version: int
    previous: int | None = None
    serving: int | None = None
    role: str | None = None
    error: str | None = None
    error_type: str | None = None
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    scorer: str = ""
    at: int = field(default_factory=now_ms)

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "service": self.service,
            "model": self.model,
            "version": self.version,
            "previous": self.previous,
            "serving": self.serving,
            "role": self.role,
            "error": self.error,
            "error_type": self.error_type,
            "timings_ms": dict(self.timings_ms),
            "scorer": self.scorer,
            "at": self.at,
        }

    def encode(self) -> bytes:
        return codec.dumps(self.to_json())

    def record(self) -> OutRecord:
        return OutRecord(self.encode(), self.model.encode(), timestamp=self.at)


def decode_model_event(data: bytes) -> ModelEvent:
    """Decode a model-event record; raises ``DecodeError`` saying what is wrong."""
    obj = codec.loads(data, _KIND)
    timings = obj.get("timings_ms") or {}
    if not isinstance(timings, dict) or not all(
        isinstance(v, int | float) for v in timings.values()
    ):
        raise DecodeError("model event field 'timings_ms' must be an object of numbers")
    return ModelEvent(
        event=codec.field(obj, "event", str, _KIND),
        service=codec.field(obj, "service", str, _KIND),
        model=codec.field(obj, "model", str, _KIND),
        version=codec.field(obj, "version", int, _KIND),
        previous=codec.optional(obj, "previous", int, _KIND),
        serving=codec.optional(obj, "serving", int, _KIND),
        role=codec.optional(obj, "role", str, _KIND),
        error=codec.optional(obj, "error", str, _KIND),
        error_type=codec.optional(obj, "error_type", str, _KIND),
        timings_ms={str(k): float(v) for k, v in timings.items()},
        scorer=codec.optional(obj, "scorer", str, _KIND) or "",
        at=codec.field(obj, "at", int, _KIND),
    )


def emit(
    backplane: Backplane,
    service: str,
    kind: str,
    ref: ModelRef,
    *,
    scorer: str,
    serving: int | None,
    role: str | None = None,
    previous: int | None = None,
    timings: Mapping[str, float] | None = None,
    error: Exception | str | None = None,
) -> None:
    """Write one event about ``ref`` to ``<service>.model-events``.

    ``error`` is the exception (its type is recorded too) or a reason in words. Never
    raises: a lost event must not stop a model from serving or a trainer from training,
    so a failed write is logged and dropped.
    """
    event = ModelEvent(
        event=kind,
        service=service,
        model=ref.name,
        version=ref.version,
        previous=previous,
        serving=serving,
        role=role,
        error=None if error is None else str(error),
        error_type=type(error).__name__ if isinstance(error, Exception) else None,
        timings_ms=dict(timings or {}),
        scorer=scorer,
    )
    try:
        backplane.produce(ServiceTopics(service).model_events, [event.record()])
    except Exception as exc:
        log_recovered(log, exc, "%s: could not write a %s event about %s", scorer, kind, ref)
