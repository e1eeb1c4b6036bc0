"""The monitor's join: requests, every model's score, the result and the (late) label.

:class:`Joiner` keeps bounded state per recent request id and turns records, in whatever
order they arrive (topics are read concurrently, labels come late), into observations:

* :class:`Scored` once per (request, model version): the score, the request's event time
  when known (else the score record's timestamp), and the other models' scores of the
  same request seen so far (for agreement between every pair of models);
* :class:`Labelled` once per (request, model version) when both its score and its label
  are known, whichever came first;
* :class:`Chosen` once per request for its first result (late-answer notes are skipped).

A label names its request by id, or by entity and event time (every request of that
entity with exactly that event time). The first label of a request counts; corrections
(a later ``labelled_at``) are ignored here; the archive's readers apply them.

Bounds: an entry is dropped once its event time is ``retention_ms`` older than the newest
event time seen, and the oldest entries go first beyond ``max_pending``; so are labels
waiting for a request not yet seen. A label for a dropped request is counted as
unmatched. Redelivered records (at-least-once) are recognised by these keys.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from modelstream.archive.rows import prediction_of
from modelstream.wire.labels import Label, LabelValue
from modelstream.wire.requests import InferenceRequest
from modelstream.wire.results import Result
from modelstream.wire.scores import Score


@dataclass(frozen=True, slots=True)
class ScoreView:
    """What the monitor needs of one score."""

    ref: str
    role: str
    prediction: float | None
    text: str | None
    probabilities: tuple[float, ...] | None
    error: str | None
    latency_ms: float

    @classmethod
    def of(cls, score: Score) -> ScoreView:
        prediction, text, proba = prediction_of(score.outputs if score.ok else None)
        return cls(
            score.ref,
            score.role,
            prediction,
            text,
            None if proba is None else tuple(proba),
            score.error if score.error is not None else (None if score.ok else "no outputs"),
            score.latency_ms,
        )

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


@dataclass(frozen=True, slots=True)
class Scored:
    view: ScoreView
    event_time: int
    peers: tuple[ScoreView, ...]


@dataclass(frozen=True, slots=True)
class Labelled:
    view: ScoreView
    event_time: int
    label: LabelValue


@dataclass(frozen=True, slots=True)
class Chosen:
    event_time: int
    ref: str | None  # None: the fallback or a deadline miss answered
    deadline_met: bool


Observation = Scored | Labelled | Chosen


@dataclass(slots=True)
class _Entry:
    event_time: int | None = None
    entity: str | None = None
    label: LabelValue | None = None
    scores: dict[str, ScoreView] = field(default_factory=dict)
    answered: bool = False
    requested: bool = False

    def time(self, fallback: int) -> int:
        return self.event_time if self.event_time is not None else fallback


class Joiner:
    """Bounded join state of one service (see the module for the rules)."""

    def __init__(self, retention_ms: int, max_pending: int) -> None:
        self._retention = retention_ms
        self._max = max_pending
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._by_entity: dict[tuple[str, int], set[str]] = {}
        self._entity_labels: OrderedDict[tuple[str, int], LabelValue] = OrderedDict()
        self.watermark: int | None = None
        self.unmatched_labels = 0

    def __len__(self) -> int:
        return len(self._entries)

    def has_request(self, request_id: str) -> bool:
        """Whether the request itself was seen (and not yet expired)."""
        entry = self._entries.get(request_id)
        return entry is not None and entry.requested

    def _entry(self, request_id: str) -> _Entry:
        entry = self._entries.get(request_id)
        if entry is None:
            entry = self._entries[request_id] = _Entry()
        return entry

    def _advance(self, event_time: int) -> None:
        if self.watermark is None or event_time > self.watermark:
            self.watermark = event_time

    def on_request(self, request: InferenceRequest) -> list[Observation]:
        self._advance(request.event_time)
        entry = self._entry(request.id)
        if entry.requested:
            return []  # redelivered
        entry.requested = True
        entry.event_time, entry.entity = request.event_time, request.entity
        if request.entity is not None:
            key = (request.entity, request.event_time)
            self._by_entity.setdefault(key, set()).add(request.id)
            waiting = self._entity_labels.get(key)
            if waiting is not None and entry.label is None:
                return self._label(entry, waiting)
        return []

    def on_score(self, score: Score, timestamp: int) -> list[Observation]:
        entry = self._entry(score.request_id)
        if score.ref in entry.scores:
            return []  # redelivered
        view = ScoreView.of(score)
        peers = tuple(entry.scores.values())
        entry.scores[view.ref] = view
        at = entry.time(timestamp)
        out: list[Observation] = [Scored(view, at, peers)]
        if entry.label is not None:
            out.append(Labelled(view, at, entry.label))
        return out

    def on_result(self, result: Result, timestamp: int) -> list[Observation]:
        entry = self._entry(result.request_id)
        if entry.answered:
            return []
        entry.answered = True
        return [Chosen(entry.time(timestamp), result.ref, result.deadline_met)]

    def on_label(self, label: Label) -> list[Observation]:
        if label.request_id is not None:
            entry = self._entries.get(label.request_id)
            if entry is None:
                # The label came before anything else of its request: keep it waiting.
                entry = self._entry(label.request_id)
                entry.event_time = label.event_time
            return self._label(entry, label.value) if entry.label is None else []
        assert label.entity is not None and label.event_time is not None
        key = (label.entity, label.event_time)
        ids = self._by_entity.get(key)
        if not ids:
            self._entity_labels[key] = label.value
            if len(self._entity_labels) > self._max:
                self._entity_labels.popitem(last=False)
            return []
        out: list[Observation] = []
        for rid in sorted(ids):
            entry = self._entries.get(rid)
            if entry is not None and entry.label is None:
                out.extend(self._label(entry, label.value))
        return out

    def _label(self, entry: _Entry, value: LabelValue) -> list[Observation]:
        entry.label = value
        at = entry.time(self.watermark or 0)
        return [Labelled(view, at, value) for view in entry.scores.values()]

    def expire(self) -> int:
        """Drop entries past retention or beyond the cap; return how many went."""
        dropped = 0
        cutoff = None if self.watermark is None else self.watermark - self._retention
        while self._entries:
            rid, entry = next(iter(self._entries.items()))
            old = cutoff is not None and entry.event_time is not None and entry.event_time < cutoff
            if not old and len(self._entries) <= self._max:
                break
            self._entries.popitem(last=False)
            dropped += 1
            if entry.label is not None and not entry.scores:
                self.unmatched_labels += 1
            if entry.entity is not None and entry.event_time is not None:
                key = (entry.entity, entry.event_time)
                ids = self._by_entity.get(key)
                if ids is not None:
                    ids.discard(rid)
                    if not ids:
                        del self._by_entity[key]
                        self._entity_labels.pop(key, None)
        return dropped
