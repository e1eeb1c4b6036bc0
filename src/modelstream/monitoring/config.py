"""What the monitor measures over, and when it alerts: one frozen, validated object.

Windows are of *event time* (the request's ``event_time``): a window holds the
observations whose event time is within ``window_ms`` of the newest event time seen
(the monitor's watermark), and of those at most the ``window_count`` newest. Either bound
may be ``None`` (not both). Thresholds are explained where they are used
(:mod:`.evaluate`); every default is a conventional starting point, not a law.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelstream.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """Windows, reference sizes, thresholds and state bounds of a monitor."""

    window_ms: int | None = 15 * 60_000
    window_count: int | None = 1_000
    # Quality is reported (and alerted on, and fed to the quality policy) only with at
    # least this many labelled requests in the window: fewer is noise.
    min_labels: int = 30
    # Errors/latency need this many scores in the window before an error_rate alert.
    min_scores: int = 20
    # The reference of a distribution is its ``reference_size`` earliest values by event
    # time (the first window after deployment) unless one is set (API or descriptor tag).
    reference_size: int = 500
    min_drift_samples: int = 100
    psi_bins: int = 10
    psi_threshold: float = 0.2
    ks_alpha: float = 0.001
    ks_min_statistic: float = 0.1
    # quality_drop: accuracy below baseline - max_quality_drop (classifiers), or MAE above
    # baseline * (1 + max_quality_drop) (regressors).
    max_quality_drop: float = 0.1
    min_accuracy: float | None = None
    max_error_rate: float = 0.05
    max_latency_p99_ms: float | None = None
    adwin_delta: float = 0.002
    # A condition that persists is alerted again only after this long (wall clock).
    realert_ms: int = 15 * 60_000
    # Bounded state: requests kept for joining labels (event time) and at most how many.
    retention_ms: int = 24 * 3_600_000
    max_pending: int = 100_000
    max_window_items: int = 20_000
    max_features: int = 64
    evaluate_every: int = 200
    recent_alerts: int = 50

    def __post_init__(self) -> None:
        if self.window_ms is None and self.window_count is None:
            raise ConfigurationError(
                "the monitor needs a window: set window_ms, window_count, or both"
            )
        positive = {
            "window_ms": self.window_ms or 1,
            "window_count": self.window_count or 1,
            "min_labels": self.min_labels,
            "min_scores": self.min_scores,
            "reference_size": self.reference_size,
            "min_drift_samples": self.min_drift_samples,
            "retention_ms": self.retention_ms,
            "max_pending": self.max_pending,
            "max_window_items": self.max_window_items,
            "max_features": self.max_features,
            "evaluate_every": self.evaluate_every,
        }
        bad = [name for name, value in positive.items() if value < 1]
        if bad or self.psi_bins < 2 or not 0 < self.ks_alpha < 1:
            raise ConfigurationError(
                f"monitor settings out of range ({', '.join(bad) or 'psi_bins/ks_alpha'}): "
                "counts and times must be >= 1, psi_bins >= 2 and 0 < ks_alpha < 1"
            )

    def window_json(self) -> dict[str, int | None]:
        """The window as it appears in alerts and snapshots."""
        return {"ms": self.window_ms, "count": self.window_count}
