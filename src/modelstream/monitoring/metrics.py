"""Prometheus metrics of the monitor, every name prefixed ``modelstream_monitor_``.

The metrics live in a ``CollectorRegistry`` the caller passes (the gateway's, when the
monitor shares its process, so they appear on its ``/metrics``) or a registry of their
own. :func:`monitor_metrics` returns the one :class:`MonitorMetrics` of a registry, so
the monitors of several services in one process share the families (each sample is
labelled by ``service``). Gauges show the latest evaluation of the current window;
``model`` is ``name@version``, and ``""`` for service-wide alerts (input drift).
"""

from __future__ import annotations

import threading
import weakref

from prometheus_client import CollectorRegistry, Counter, Gauge

from modelstream.monitoring.snapshot import DriftSnapshot, MonitorSnapshot

_LOCK = threading.Lock()
_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, MonitorMetrics] = (
    weakref.WeakKeyDictionary()
)


class MonitorMetrics:
    """The monitor's metric families in one registry (use :func:`monitor_metrics`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = r = registry
        sm = ["service", "model"]
        self.quality = Gauge(
            "modelstream_monitor_quality",
            "Quality of a model version over the window (accuracy, log_loss, roc_auc, mae, rmse)",
            [*sm, "metric"],
            registry=r,
        )
        self.labelled = Gauge(
            "modelstream_monitor_labelled", "Labelled requests in the window", sm, registry=r
        )
        self.latency = Gauge(
            "modelstream_monitor_latency_ms",
            "Model latency over the window, from the scores' latency_ms",
            [*sm, "quantile"],
            registry=r,
        )
        self.error_rate = Gauge(
            "modelstream_monitor_error_rate", "Share of scores that are errors", sm, registry=r
        )
        self.chosen_share = Gauge(
            "modelstream_monitor_chosen_share",
            "Share of the window's answers given by this model version",
            sm,
            registry=r,
        )
        self.agreement = Gauge(
            "modelstream_monitor_agreement",
            "Share of requests where two model versions' answers agree",
            [*sm, "other"],
            registry=r,
        )
        self.psi = Gauge(
            "modelstream_monitor_drift_psi",
            "Population stability index of a distribution against a reference",
            [*sm, "subject", "against"],
            registry=r,
        )
        self.ks = Gauge(
            "modelstream_monitor_drift_ks_statistic",
            "Two-sample Kolmogorov-Smirnov statistic against a reference",
            [*sm, "subject", "against"],
            registry=r,
        )
        self.alerts = Counter(
            "modelstream_monitor_alerts", "Alerts raised", [*sm, "kind"], registry=r
        )

    def alert(self, service: str, model: str | None, kind: str) -> None:
        self.alerts.labels(service, model or "", kind).inc()

    def _drift(self, service: str, model: str, drift: DriftSnapshot) -> None:
        labels = (service, model, drift.subject, drift.against)
        self.psi.labels(*labels).set(drift.measure.psi)
        self.ks.labels(*labels).set(drift.measure.ks_statistic)

    def update(self, snap: MonitorSnapshot) -> None:
        """Set every gauge of ``snap.service`` from ``snap``."""
        s = snap.service
        for m in snap.models:
            for name, value in m.quality.items():
                self.quality.labels(s, m.model, name).set(value)
            self.labelled.labels(s, m.model).set(m.labelled)
            if m.latency_p50_ms is not None and m.latency_p99_ms is not None:
                self.latency.labels(s, m.model, "0.5").set(m.latency_p50_ms)
                self.latency.labels(s, m.model, "0.99").set(m.latency_p99_ms)
            if m.error_rate is not None:
                self.error_rate.labels(s, m.model).set(m.error_rate)
            if m.chosen_share is not None:
                self.chosen_share.labels(s, m.model).set(m.chosen_share)
            for drift in m.score_drift:
                self._drift(s, m.model, drift)
        for pair in snap.agreement:
            self.agreement.labels(s, pair.a, pair.b).set(pair.agreement)
            self.agreement.labels(s, pair.b, pair.a).set(pair.agreement)
        for drift in snap.input_drift:
            self._drift(s, "", drift)


def monitor_metrics(registry: CollectorRegistry | None = None) -> MonitorMetrics:
    """The :class:`MonitorMetrics` of ``registry`` (a new private registry when ``None``)."""
    if registry is None:
        return MonitorMetrics(CollectorRegistry(auto_describe=True))
    with _LOCK:
        found = _BY_REGISTRY.get(registry)
        if found is None:
            found = _BY_REGISTRY[registry] = MonitorMetrics(registry)
        return found
