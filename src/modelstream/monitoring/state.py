"""The monitor's state of one service: joins, per-model trackers, drift series, windows.

Not thread-safe by itself: :class:`~.monitor.Monitor` serialises every call under its
lock. Records go in through ``on_*``; :meth:`MonitorState.snapshot` reads the windows
ending at the watermark (the newest event time seen).

Input features (see :func:`input_columns`): each numeric input tensor of one row is
flattened per column, named ``tensor[i]``; request ``features`` are named
``features.<name>``. At most ``max_features`` distinct names are tracked (the first seen).

References: a feature's or a model's score distribution is compared against its
*reference*: set explicitly (:meth:`MonitorState.set_reference`, e.g. from a descriptor's
``monitoring.reference`` tag, see :mod:`.references`), else its ``reference_size``
earliest values by event time. A model's scores are also compared with each canary's
scores (models whose scores carry the role ``canary``) over the same window.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from modelstream.monitoring.config import MonitorConfig
from modelstream.monitoring.joiner import Chosen, Joiner, Labelled, Observation, Scored
from modelstream.monitoring.measures import agree
from modelstream.monitoring.snapshot import Agreement, DriftSnapshot, ModelSnapshot
from modelstream.monitoring.tracker import DriftSeries, ModelTracker
from modelstream.monitoring.window import EventWindow
from modelstream.wire.labels import Label
from modelstream.wire.requests import InferenceRequest
from modelstream.wire.results import Result
from modelstream.wire.scores import Score
from modelstream.wire.tensors import Tensor


def _floats(tensor: Tensor) -> list[float] | None:
    if tensor.datatype == "BYTES" or not (len(tensor.shape) <= 1 or tensor.shape[0] == 1):
        return None
    try:
        return [float(v) for v in tensor.data]
    except (TypeError, ValueError):
        return None


def input_columns(request: InferenceRequest) -> dict[str, float]:
    """The request's numeric input columns and features, by name (see the module)."""
    out: dict[str, float] = {}
    for tensor in request.inputs:
        values = _floats(tensor)
        if values is not None:
            out.update({f"{tensor.name}[{i}]": v for i, v in enumerate(values)})
    for name, value in (request.features or {}).items():
        if value is not None:
            out[f"features.{name}"] = float(value)
    return out


class MonitorState:
    """Everything the monitor has measured of one service (see the module)."""

    def __init__(self, config: MonitorConfig) -> None:
        self.config = c = config
        self.joiner = Joiner(c.retention_ms, c.max_pending)
        self.models: dict[str, ModelTracker] = {}
        self.inputs: dict[str, DriftSeries] = {}
        self.pairs: dict[tuple[str, str], EventWindow[bool]] = {}
        self.chosen: EventWindow[tuple[str | None, bool]] = EventWindow(
            c.window_ms, c.window_count, c.max_window_items
        )
        self.records: Counter[str] = Counter()
        self.error_drifts: list[tuple[str, float, float]] = []  # ADWIN detections not yet alerted
        self.new_models: list[str] = []  # versions first seen, for reference lookup

    @property
    def watermark(self) -> int:
        return self.joiner.watermark or 0

    def tracker(self, ref: str, role: str) -> ModelTracker:
        found = self.models.get(ref)
        if found is None:
            found = self.models[ref] = ModelTracker(ref, role, self.config)
            self.new_models.append(ref)
        return found

    def series(self, feature: str) -> DriftSeries | None:
        found = self.inputs.get(feature)
        if found is None and len(self.inputs) < self.config.max_features:
            found = self.inputs[feature] = DriftSeries(self.config)
        return found

    # -- records in ------------------------------------------------------------------------

    def on_request(self, request: InferenceRequest) -> None:
        self.records["requests"] += 1
        fresh = not self.joiner.has_request(request.id)
        observations = self.joiner.on_request(request)
        if fresh:  # a redelivered request must not count twice in the input windows
            for name, value in input_columns(request).items():
                series = self.series(name)
                if series is not None:
                    series.observe(request.event_time, value)
        self._apply(observations)

    def on_score(self, score: Score, timestamp: int) -> None:
        self.records["scores"] += 1
        self._apply(self.joiner.on_score(score, timestamp))

    def on_result(self, result: Result, timestamp: int) -> None:
        self.records["results"] += 1
        self._apply(self.joiner.on_result(result, timestamp))

    def on_label(self, label: Label) -> None:
        self.records["labels"] += 1
        self._apply(self.joiner.on_label(label))

    def _apply(self, observations: Iterable[Observation]) -> None:
        for obs in observations:
            if isinstance(obs, Scored):
                self.tracker(obs.view.ref, obs.view.role).on_scored(obs.view, obs.event_time)
                for peer in obs.peers:
                    agreed = agree(obs.view, peer)
                    if agreed is not None:
                        pair = (min(obs.view.ref, peer.ref), max(obs.view.ref, peer.ref))
                        window = self.pairs.get(pair)
                        if window is None:
                            c = self.config
                            window = self.pairs[pair] = EventWindow(
                                c.window_ms, c.window_count, c.max_window_items
                            )
                        window.add(obs.event_time, agreed)
            elif isinstance(obs, Labelled):
                tracker = self.tracker(obs.view.ref, obs.view.role)
                drifted = tracker.on_labelled(obs.view, obs.event_time, obs.label)
                if drifted is not None:
                    self.error_drifts.append((obs.view.ref, *drifted))
            elif isinstance(obs, Chosen):
                self.chosen.add(obs.event_time, (obs.ref, obs.deadline_met))

    def trim(self) -> None:
        """Expire join state and drop window items out of time (bounded memory)."""
        self.joiner.expire()
        w = self.watermark
        for tracker in self.models.values():
            tracker.trim(w)
        for series in self.inputs.values():
            series.window.trim(w)
        for window in self.pairs.values():
            window.trim(w)
        self.chosen.trim(w)

    # -- reading ---------------------------------------------------------------------------

    def input_drift(self) -> tuple[DriftSnapshot, ...]:
        out = []
        for name, series in sorted(self.inputs.items()):
            found = series.measure(self.watermark)
            if found is not None:
                out.append(DriftSnapshot(name, "reference", series.reference.source, found))
        return tuple(out)

    def score_drift(self, tracker: ModelTracker) -> tuple[DriftSnapshot, ...]:
        w = self.watermark
        out = []
        found = tracker.scores.measure(w)
        if found is not None:
            source = tracker.scores.reference.source
            out.append(DriftSnapshot(tracker.ref, "reference", source, found))
        if tracker.role != "canary":
            recent = tracker.scores.recent(w)
            for canary in sorted(self.models.values(), key=lambda t: t.ref):
                if canary.role == "canary" and canary is not tracker:
                    versus = tracker.scores.against(canary.scores.recent(w), recent)
                    if versus is not None:
                        out.append(DriftSnapshot(tracker.ref, f"canary:{canary.ref}", "", versus))
        return tuple(out)

    def agreement(self) -> tuple[Agreement, ...]:
        out = []
        for (a, b), window in sorted(self.pairs.items()):
            values = window.values(self.watermark)
            if values:
                out.append(Agreement(a, b, sum(values) / len(values), len(values)))
        return tuple(out)

    def results(self) -> tuple[Counter[str | None], int, int]:
        """Answers per model ref in the window, the window's results, its deadline misses."""
        items = self.chosen.values(self.watermark)
        by_ref: Counter[str | None] = Counter(ref for ref, _ in items)
        return by_ref, len(items), sum(1 for _, met in items if not met)

    def model_snapshots(self) -> tuple[ModelSnapshot, ...]:
        w = self.watermark
        by_ref, results, _ = self.results()
        out = []
        for ref, t in sorted(self.models.items()):
            quality = t.quality(w)
            scored, errors, p50, p99 = t.latency_errors(w)
            chosen = by_ref.get(ref, 0)
            out.append(
                ModelSnapshot(
                    model=ref,
                    role=t.role,
                    task=None if quality is None else quality.task,
                    labelled=len(t.labelled.values(w)),
                    quality={} if quality is None else dict(quality.metrics),
                    primary=None if quality is None else quality.primary,
                    baseline=None if quality is None else t.baseline(quality.primary),
                    scored=scored,
                    errors=errors,
                    latency_p50_ms=p50,
                    latency_p99_ms=p99,
                    chosen=chosen,
                    chosen_share=chosen / results if results else None,
                    error_drifts=t.error_drifts,
                    score_drift=self.score_drift(t),
                )
            )
        return tuple(out)
