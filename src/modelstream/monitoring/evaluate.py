"""When the monitor alerts: conditions over a snapshot, and ADWIN's events.

Each rule below is a *condition* on the current window, debounced by the
:class:`~.alerts.Alerter` (it alerts when it starts to hold and, if it persists, again
after ``realert_ms``):

* ``quality_drop`` (per model, with at least ``min_labels`` labelled requests): a
  classifier's accuracy below ``baseline - max_quality_drop`` (and below ``min_accuracy``
  when set); a regressor's MAE above ``baseline * (1 + max_quality_drop)``. The baseline
  is explained in :mod:`.tracker`.
* ``error_rate`` (per model, with at least ``min_scores`` scores): errors / scores above
  ``max_error_rate``.
* ``latency`` (per model, when ``max_latency_p99_ms`` is set): p99 latency above it.
* ``score_drift`` (per model and reference: its own, each canary's) and ``input_drift``
  (per feature): the PSI/KS verdict of :func:`~.drift.measure`.

``error_drift`` is an *event*: River's ADWIN found the mean streaming loss of a model
rose (alerted at most once per ``realert_ms`` per model).
"""

from __future__ import annotations

from collections.abc import Iterable

from modelstream.monitoring.alerts import Alert, Alerter, AlertKind, Finding
from modelstream.monitoring.config import MonitorConfig
from modelstream.monitoring.snapshot import DriftSnapshot, ModelSnapshot, MonitorSnapshot


def _quality(a: Alerter, c: MonitorConfig, m: ModelSnapshot) -> Alert | None:
    value = m.primary_value
    if m.primary is None or value is None:
        return None
    if m.primary == "accuracy":
        limits = [x for x in (c.min_accuracy,) if x is not None]
        if m.baseline is not None:
            limits.append(m.baseline - c.max_quality_drop)
        if not limits:
            return None
        threshold = max(limits)
        holds = value < threshold
        message = f"{m.model} accuracy {value:.3f} fell below {threshold:.3f}"
    else:
        if m.baseline is None:
            return None
        threshold = m.baseline * (1 + c.max_quality_drop)
        holds = value > threshold
        message = f"{m.model} {m.primary} {value:.4g} rose above {threshold:.4g}"
    if m.baseline is not None:
        message += f" (baseline {m.baseline:.4g}, {m.labelled} labelled requests)"
    finding = Finding(AlertKind.QUALITY_DROP, m.model, m.primary, value, threshold, message)
    return a.condition(holds, finding)


def _drift(
    a: Alerter, c: MonitorConfig, kind: AlertKind, model: str | None, d: DriftSnapshot
) -> Alert | None:
    x = d.measure
    what = f"{model} scores" if model else f"input {d.subject}"
    message = (
        f"{what} drifted against {d.against}: PSI {x.psi:.3f}, KS {x.ks_statistic:.3f} "
        f"(p={x.ks_p_value:.2g}) on {x.n_current} values vs {x.n_reference}"
    )
    metric = f"psi:{d.against}" if model else f"psi:{d.subject}"
    return a.condition(x.drifted, Finding(kind, model, metric, x.psi, c.psi_threshold, message))


def evaluate_alerts(
    alerter: Alerter,
    config: MonitorConfig,
    snapshot: MonitorSnapshot,
    error_drifts: Iterable[tuple[str, float, float]],
) -> list[Alert]:
    """Every alert the rules of the module raise now (after debouncing)."""
    c = config
    raised: list[Alert | None] = []
    for ref, before, after in error_drifts:
        message = f"{ref} streaming error rose from {before:.3f} to {after:.3f} (ADWIN)"
        raised.append(
            alerter.event(Finding(AlertKind.ERROR_DRIFT, ref, "loss", after, before, message))
        )
    for m in snapshot.models:
        raised.append(_quality(alerter, c, m))
        rate = m.error_rate
        if rate is not None and m.scored >= c.min_scores:
            message = f"{m.model} error rate {rate:.3f} over {m.scored} scores"
            raised.append(
                alerter.condition(
                    rate > c.max_error_rate,
                    Finding(
                        AlertKind.ERROR_RATE,
                        m.model,
                        "error_rate",
                        rate,
                        c.max_error_rate,
                        message + f" exceeds {c.max_error_rate}",
                    ),
                )
            )
        if c.max_latency_p99_ms is not None and m.latency_p99_ms is not None:
            p99 = m.latency_p99_ms
            raised.append(
                alerter.condition(
                    p99 > c.max_latency_p99_ms,
                    Finding(
                        AlertKind.LATENCY,
                        m.model,
                        "latency_p99_ms",
                        p99,
                        c.max_latency_p99_ms,
                        f"{m.model} p99 latency {p99:.2f} ms exceeds {c.max_latency_p99_ms} ms",
                    ),
                )
            )
        for d in m.score_drift:
            raised.append(_drift(alerter, c, AlertKind.SCORE_DRIFT, m.model, d))
    for d in snapshot.input_drift:
        raised.append(_drift(alerter, c, AlertKind.INPUT_DRIFT, None, d))
    return [alert for alert in raised if alert is not None]
