"""Per-distribution and per-model-version state of the monitor, and their summaries.

* :class:`DriftSeries`: one distribution (an input feature, a model's scores): its
  reference (:class:`~.window.EarliestSample`) and its sliding window of recent values.
* :class:`ModelTracker`: one model version: windows of its scores (latency, errors) and
  of its labelled scores (quality), its quality *baseline*, its score distribution, and
  River's ADWIN over its streaming loss.

The quality baseline, what ``quality_drop`` compares against, is the descriptor's
lineage metric of the same name (``accuracy`` or ``mae``) when the descriptor has it;
else the quality over the model's ``reference_size`` earliest labelled requests (its
first window after deployment).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from modelstream.monitoring import stats
from modelstream.monitoring.config import MonitorConfig
from modelstream.monitoring.drift import DriftMeasure, measure
from modelstream.monitoring.joiner import ScoreView
from modelstream.monitoring.measures import Quality, loss, quality_of, score_value
from modelstream.monitoring.window import EarliestSample, EventWindow
from modelstream.wire.labels import LabelValue

log = logging.getLogger(__name__)


class DriftSeries:
    """One distribution: its reference sample and its recent window."""

    def __init__(self, config: MonitorConfig) -> None:
        self._config = config
        self.reference: EarliestSample[float] = EarliestSample(config.reference_size)
        self.window: EventWindow[float] = EventWindow(
            config.window_ms,
            config.window_count or config.reference_size,
            config.max_window_items,
        )

    def observe(self, event_time: int, value: float) -> None:
        self.reference.offer(event_time, value)
        self.window.add(event_time, value)

    def recent(self, watermark: int) -> list[float]:
        return self.window.values(watermark)

    def against(self, reference: list[float], current: list[float]) -> DriftMeasure | None:
        """PSI/KS of ``current`` against ``reference``; ``None`` with too few values."""
        c = self._config
        if min(len(reference), len(current)) < c.min_drift_samples:
            return None
        return measure(
            reference,
            current,
            bins=c.psi_bins,
            psi_threshold=c.psi_threshold,
            ks_alpha=c.ks_alpha,
            ks_min_statistic=c.ks_min_statistic,
        )

    def measure(self, watermark: int) -> DriftMeasure | None:
        return self.against(self.reference.values(), self.recent(watermark))


def _adwin(delta: float) -> Any:
    try:
        from river import drift
    except ImportError:  # river is an optional extra; without it ADWIN is off
        log.warning("river is not installed: ADWIN error drift is off (pip install river)")
        return None
    return drift.ADWIN(delta=delta)  # type: ignore[no-untyped-call]


class ModelTracker:
    """The monitor's state of one model version (see the module)."""

    def __init__(self, ref: str, role: str, config: MonitorConfig) -> None:
        self.ref = ref
        self.role = role
        self._config = config
        c = config
        self.scored: EventWindow[tuple[float, bool]] = EventWindow(
            c.window_ms, c.window_count, c.max_window_items
        )
        self.labelled: EventWindow[tuple[LabelValue, ScoreView]] = EventWindow(
            c.window_ms, c.window_count, c.max_window_items
        )
        self._first: EarliestSample[tuple[LabelValue, ScoreView]] = EarliestSample(c.reference_size)
        self.lineage_metrics: dict[str, float] = {}
        self.scores = DriftSeries(config)
        self._adwin = _adwin(c.adwin_delta)
        self.error_drifts = 0

    def on_scored(self, view: ScoreView, event_time: int) -> None:
        self.role = view.role
        self.scored.add(event_time, (view.latency_ms, not view.ok))
        value = score_value(view)
        if value is not None:
            self.scores.observe(event_time, value)

    def on_labelled(
        self, view: ScoreView, event_time: int, label: LabelValue
    ) -> tuple[float, float] | None:
        """Record a labelled score; when ADWIN finds the loss drifted *up*, return the
        mean loss before and after the change."""
        self.labelled.add(event_time, (label, view))
        self._first.offer(event_time, (label, view))
        value = loss(label, view)
        if value is None or self._adwin is None:
            return None
        before = float(self._adwin.estimation)
        self._adwin.update(value)
        if self._adwin.drift_detected and float(self._adwin.estimation) > before:
            self.error_drifts += 1
            return before, float(self._adwin.estimation)
        return None

    def quality(self, watermark: int) -> Quality | None:
        """Quality over the current window, ``None`` below ``min_labels``."""
        pairs = self.labelled.values(watermark)
        if len(pairs) < self._config.min_labels:
            return None
        return quality_of(pairs)

    def baseline(self, primary: str) -> float | None:
        """The baseline of metric ``primary`` (see the module)."""
        if primary in self.lineage_metrics:
            return self.lineage_metrics[primary]
        pairs = self._first.values()
        if len(pairs) < self._config.min_labels:
            return None
        first = quality_of(pairs)
        return None if first is None or first.primary != primary else first.value

    def latency_errors(self, watermark: int) -> tuple[int, int, float | None, float | None]:
        """``(scored, errors, p50 ms, p99 ms)`` over the current window."""
        items = self.scored.values(watermark)
        if not items:
            return 0, 0, None, None
        summary = stats.latency_summary(np.array([lat for lat, _ in items], dtype=np.float64))
        errors = sum(1 for _, failed in items if failed)
        return len(items), errors, summary.p50, summary.p99

    def trim(self, watermark: int) -> None:
        self.scored.trim(watermark)
        self.labelled.trim(watermark)
        self.scores.window.trim(watermark)
