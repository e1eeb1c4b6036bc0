"""What the monitor knows at one moment: frozen, JSON-ready (for the CLI and the dashboard).

:meth:`MonitorSnapshot.to_json` is the HTTP/JSON form: plain objects, ``null`` for a
value not measured yet (never NaN), model versions as ``name@version`` strings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelstream.monitoring.drift import DriftMeasure


def _num(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


@dataclass(frozen=True, slots=True)
class DriftSnapshot:
    """One distribution (an input feature, or a model's scores) against one reference.

    ``against`` is ``"reference"`` (the training reference: set by API, from the
    descriptor, or the first window) or ``"canary:name@version"``.
    """

    subject: str
    against: str
    reference_source: str
    measure: DriftMeasure

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "against": self.against,
            "reference_source": self.reference_source,
            **self.measure.to_json(),
        }


@dataclass(frozen=True, slots=True)
class ModelSnapshot:
    """One model version over the current window."""

    model: str
    role: str
    task: str | None
    labelled: int
    quality: Mapping[str, float]
    primary: str | None
    baseline: float | None
    scored: int
    errors: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    chosen: int
    chosen_share: float | None
    error_drifts: int
    score_drift: tuple[DriftSnapshot, ...] = ()

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.scored if self.scored else None

    @property
    def primary_value(self) -> float | None:
        return None if self.primary is None else self.quality.get(self.primary)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "role": self.role,
            "task": self.task,
            "labelled": self.labelled,
            "quality": {k: _num(v) for k, v in self.quality.items()},
            "primary": self.primary,
            "baseline": _num(self.baseline),
            "scored": self.scored,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "latency_ms": {"p50": _num(self.latency_p50_ms), "p99": _num(self.latency_p99_ms)},
            "chosen": self.chosen,
            "chosen_share": self.chosen_share,
            "error_drifts": self.error_drifts,
            "score_drift": [d.to_json() for d in self.score_drift],
        }


@dataclass(frozen=True, slots=True)
class Agreement:
    """Share of requests both models answered where their answers agree."""

    a: str
    b: str
    agreement: float
    n: int

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "agreement": self.agreement, "n": self.n}


@dataclass(frozen=True, slots=True)
class MonitorSnapshot:
    """The monitor's view of one service at ``at`` (wall clock, ms)."""

    service: str
    at: int
    watermark: int | None
    window: Mapping[str, int | None]
    records: Mapping[str, int]
    pending: int
    unmatched_labels: int
    results: int
    deadline_misses: int
    models: tuple[ModelSnapshot, ...]
    agreement: tuple[Agreement, ...]
    input_drift: tuple[DriftSnapshot, ...]
    alerts: tuple[Mapping[str, Any], ...] = field(default=())

    def model(self, ref: str) -> ModelSnapshot | None:
        return next((m for m in self.models if m.model == ref), None)

    def agreement_of(self, a: str, b: str) -> Agreement | None:
        pair = tuple(sorted((a, b)))
        return next((x for x in self.agreement if (x.a, x.b) == pair), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "at": self.at,
            "watermark": self.watermark,
            "window": dict(self.window),
            "records": dict(self.records),
            "pending": self.pending,
            "unmatched_labels": self.unmatched_labels,
            "results": self.results,
            "deadline_misses": self.deadline_misses,
            "models": [m.to_json() for m in self.models],
            "agreement": [a.to_json() for a in self.agreement],
            "input_drift": [d.to_json() for d in self.input_drift],
            "alerts": [dict(a) for a in self.alerts],
        }
