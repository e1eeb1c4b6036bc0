"""Alerts: records on ``<service>.alerts`` (and log lines), debounced.

Wire format (JSON, key = ``kind:model`` or ``kind:metric`` for service-wide alerts)::

    {
      "service": "fraud",
      "kind": "quality_drop",            see AlertKind
      "model": "gbm@3",                  null for input drift
      "metric": "accuracy",              e.g. accuracy, error_rate, latency_p99_ms, psi:x[0]
      "value": 0.61, "threshold": 0.8,
      "window": {"ms": 900000, "count": 1000},
      "message": "gbm@3 accuracy 0.610 fell below 0.800 (baseline 0.900 - 0.1)",
      "at": 1763790000000                ms, wall clock of the monitor
    }

Debouncing, per (kind, model, metric): a *condition* (:meth:`Alerter.condition`) alerts
when it becomes true, then again only if it is still true ``realert_ms`` later; once it
clears, the next time it holds alerts at once. An *event* (:meth:`Alerter.event`, ADWIN
detections) alerts at most once per ``realert_ms``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord
from modelstream.clock import Clock
from modelstream.errors import BackplaneError, DecodeError
from modelstream.logs import log_recovered
from modelstream.wire import codec

log = logging.getLogger(__name__)


class AlertKind(StrEnum):
    QUALITY_DROP = "quality_drop"
    INPUT_DRIFT = "input_drift"
    SCORE_DRIFT = "score_drift"
    ERROR_DRIFT = "error_drift"
    ERROR_RATE = "error_rate"
    LATENCY = "latency"


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert, as written to the alerts topic."""

    service: str
    kind: AlertKind
    model: str | None
    metric: str
    value: float
    threshold: float
    window: Mapping[str, int | None]
    message: str
    at: int

    @property
    def key(self) -> bytes:
        return f"{self.kind.value}:{self.model or self.metric}".encode()

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "kind": self.kind.value,
            "model": self.model,
            "metric": self.metric,
            "value": self.value,
            "threshold": self.threshold,
            "window": dict(self.window),
            "message": self.message,
            "at": self.at,
        }

    def encode(self) -> bytes:
        return codec.dumps(self.to_json())


def decode_alert(data: bytes) -> Alert:
    """Read an alert record back (for tests, the CLI and the dashboard); raises
    ``DecodeError`` (only) saying what is wrong."""
    obj = codec.loads(data, "alert")
    kind = codec.field(obj, "kind", str, "alert")
    if kind not in {k.value for k in AlertKind}:
        raise DecodeError(f"alert field 'kind' must be one of {[k.value for k in AlertKind]}")
    window = obj.get("window") or {}
    if not isinstance(window, dict) or not all(
        v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in window.values()
    ):
        raise DecodeError("alert field 'window' must be an object of integers or nulls")
    return Alert(
        service=codec.field(obj, "service", str, "alert"),
        kind=AlertKind(kind),
        model=codec.optional(obj, "model", str, "alert"),
        metric=codec.field(obj, "metric", str, "alert"),
        value=codec.number(obj, "value", "alert"),
        threshold=codec.number(obj, "threshold", "alert"),
        window=window,
        message=codec.field(obj, "message", str, "alert"),
        at=codec.field(obj, "at", int, "alert"),
    )


Sink = Callable[[Alert], None]


@dataclass(frozen=True, slots=True)
class Finding:
    """What a rule found, before debouncing turns it into an :class:`Alert` (or not)."""

    kind: AlertKind
    model: str | None
    metric: str
    value: float
    threshold: float
    message: str

    @property
    def key(self) -> tuple[str, str | None, str]:
        return (self.kind.value, self.model, self.metric)


class Alerter:
    """Debounces alert conditions and events, and sends what passes (see the module)."""

    def __init__(
        self,
        service: str,
        window: Mapping[str, int | None],
        clock: Clock,
        *,
        realert_ms: int,
        sink: Sink,
        recent: int = 50,
    ) -> None:
        self._service = service
        self._window = dict(window)
        self._clock = clock
        self._realert = realert_ms
        self._sink = sink
        self._last: dict[tuple[str, str | None, str], int] = {}
        self._active: set[tuple[str, str | None, str]] = set()
        self.recent: deque[Alert] = deque(maxlen=recent)
        self.count = 0

    def condition(self, holds: bool, finding: Finding) -> Alert | None:
        """Alert on ``holds`` as the module's debouncing allows; clear it when false."""
        key = finding.key
        if not holds:
            self._active.discard(key)
            return None
        now = self._clock.now_ms()
        if key in self._active and now - self._last.get(key, now) < self._realert:
            return None
        self._active.add(key)
        return self._send(finding, now)

    def event(self, finding: Finding) -> Alert | None:
        """Alert on a one-off event at most once per ``realert_ms``."""
        now = self._clock.now_ms()
        last = self._last.get(finding.key)
        if last is not None and now - last < self._realert:
            return None
        return self._send(finding, now)

    def _send(self, f: Finding, now: int) -> Alert:
        self._last[f.key] = now
        alert = Alert(
            self._service, f.kind, f.model, f.metric, f.value, f.threshold, self._window,
            f.message, now,
        )  # fmt: skip
        self.recent.append(alert)
        self.count += 1
        log.warning("monitor alert %s: %s", f.kind.value, f.message)
        self._sink(alert)
        return alert


def topic_sink(backplane: Backplane, topic: str) -> Sink:
    """A sink producing each alert onto ``topic``; a failed produce is logged, not raised."""

    def send(alert: Alert) -> None:
        try:
            backplane.produce(topic, [OutRecord(alert.encode(), alert.key, (), alert.at)])
        except BackplaneError as exc:
            log_recovered(log, exc, "could not write alert to %s (it was logged above)", topic)

    return send
