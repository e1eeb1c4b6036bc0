"""Statistics per model version: since, invocations, errors, latency min/mean/max/p50/p99.

The same code serves the live scorer (:meth:`modelstream.scoring.scorer.Scorer.stats`)
and ``modelstream models stats S``, which rebuilds the figures from the ``scores``
topic. One *invocation* is one request scored (one score record), whatever the batch it
was part of; its latency is the ``latency_ms`` of its score (the time its batch spent in
the model), so both sources agree exactly.

Streaming-friendly: memory is constant per version whatever the number of scores.
Percentiles come from a log-scale histogram (buckets grow by 2 %, so p50/p99 are within
about 1 % of the exact value) that can be merged across scorers or processes;
min, max, mean and counts are exact.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from modelstream.models.refs import ModelRef
from modelstream.wire.scores import Score

_GROWTH = 1.02
_LOG_GROWTH = math.log(_GROWTH)
_FLOOR_MS = 0.001  # latencies below 1 µs share the first bucket


def _bucket(latency_ms: float) -> int:
    if latency_ms <= _FLOOR_MS:
        return 0
    return 1 + int(math.log(latency_ms / _FLOOR_MS) / _LOG_GROWTH)


def _bucket_value(index: int) -> float:
    """A representative latency of bucket ``index`` (its geometric midpoint)."""
    if index == 0:
        return _FLOOR_MS
    return float(_FLOOR_MS * _GROWTH ** (index - 0.5))


@dataclass
class LatencyHistogram:
    """Counts per log-scale latency bucket, plus the exact min, max and sum."""

    buckets: dict[int, int] = field(default_factory=dict)
    count: int = 0
    total_ms: float = 0.0
    min_ms: float = math.inf
    max_ms: float = 0.0

    def add(self, latency_ms: float, n: int = 1) -> None:
        """Record ``n`` observations of ``latency_ms``."""
        if n <= 0:
            return
        latency_ms = max(0.0, float(latency_ms))
        index = _bucket(latency_ms)
        self.buckets[index] = self.buckets.get(index, 0) + n
        self.count += n
        self.total_ms += latency_ms * n
        self.min_ms = min(self.min_ms, latency_ms)
        self.max_ms = max(self.max_ms, latency_ms)

    def merge(self, other: LatencyHistogram) -> None:
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n
        self.count += other.count
        self.total_ms += other.total_ms
        self.min_ms = min(self.min_ms, other.min_ms)
        self.max_ms = max(self.max_ms, other.max_ms)

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (0..1), clamped to the exact min and max; 0 when empty."""
        if self.count == 0:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return min(self.max_ms, max(self.min_ms, _bucket_value(index)))
        return self.max_ms

    @property
    def mean_ms(self) -> float:
        return self.total_ms / self.count if self.count else 0.0


@dataclass(frozen=True, slots=True)
class VersionStats:
    """A snapshot of one model version's figures (latencies in milliseconds)."""

    ref: ModelRef
    role: str
    since: int  # ms since the epoch of the first invocation counted
    last: int  # ms since the epoch of the latest invocation counted
    invocations: int
    errors: int
    latency_min: float
    latency_mean: float
    latency_max: float
    latency_p50: float
    latency_p99: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.invocations if self.invocations else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.ref.name,
            "version": self.ref.version,
            "ref": str(self.ref),
            "role": self.role,
            "since": self.since,
            "last": self.last,
            "invocations": self.invocations,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "latency_ms": {
                "min": self.latency_min,
                "mean": self.latency_mean,
                "max": self.latency_max,
                "p50": self.latency_p50,
                "p99": self.latency_p99,
            },
        }


@dataclass
class _Version:
    role: str
    since: int
    last: int
    errors: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)


class StatsBook:
    """Running statistics per model version; thread-safe (the scorer's loop writes, any
    thread reads a snapshot)."""

    def __init__(self) -> None:
        self._versions: dict[ModelRef, _Version] = {}
        self._lock = threading.Lock()

    def record(
        self,
        ref: ModelRef,
        latency_ms: float,
        *,
        at: int,
        ok: bool = True,
        n: int = 1,
        role: str = "champion",
    ) -> None:
        """Count ``n`` invocations of ``ref`` at ``at`` (ms), each taking ``latency_ms``."""
        with self._lock:
            self._add(ref, latency_ms, at, ok, n, role)

    def record_scores(self, scores: Iterable[Score]) -> None:
        """Count score records, one invocation each (what ``models stats`` reads)."""
        # The scores of one batch share version, latency, time and role: counted by group,
        # a batch of 256 costs one update instead of 256 (the same figures).
        groups = Counter(
            (s.model, s.version, s.latency_ms, s.scored_at, s.ok, s.role) for s in scores
        )
        with self._lock:
            for (model, version, latency_ms, at, ok, role), n in groups.items():
                self._add(ModelRef(model, version), latency_ms, at, ok, n, role)

    def _add(  # noqa: PLR0917 - private and hot: positional on purpose
        self, ref: ModelRef, latency_ms: float, at: int, ok: bool, n: int, role: str
    ) -> None:
        entry = self._versions.get(ref)
        if entry is None:
            entry = self._versions[ref] = _Version(role, at, at)
        entry.role = role
        entry.since = min(entry.since, at)
        entry.last = max(entry.last, at)
        entry.latency.add(latency_ms, n)
        if not ok:
            entry.errors += n

    def snapshot(self) -> list[VersionStats]:
        """Every version's figures, ordered by model name then version."""
        with self._lock:
            return [
                VersionStats(
                    ref=ref,
                    role=v.role,
                    since=v.since,
                    last=v.last,
                    invocations=v.latency.count,
                    errors=v.errors,
                    latency_min=v.latency.min_ms if v.latency.count else 0.0,
                    latency_mean=v.latency.mean_ms,
                    latency_max=v.latency.max_ms,
                    latency_p50=v.latency.quantile(0.50),
                    latency_p99=v.latency.quantile(0.99),
                )
                for ref, v in sorted(self._versions.items())
            ]

    def get(self, ref: ModelRef) -> VersionStats | None:
        return next((s for s in self.snapshot() if s.ref == ref), None)
