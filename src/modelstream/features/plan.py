"""The compiled form of a feature set: one :class:`Plan` per distinct window.

Features that share a window share one pane per window instance: a flat list holding the
state of each of their aggregates at fixed offsets (see
:mod:`modelstream.features.aggregates`). The engine updates the pane once per event and
reads every feature of the window from it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from modelstream.features.aggregates import Aggregate, Slots
from modelstream.features.definitions import FeatureSet, Session, Window

NAN = math.nan


@dataclass(frozen=True, slots=True)
class WindowResult:
    """The value of every feature over one window instance of one entity.

    ``kind`` is ``"on_time"`` (emitted when the watermark passes ``end``) or ``"updated"``
    (a record within the allowed lateness changed an already emitted window). The last
    result emitted for ``(entity, window, start)`` is final once the watermark passes
    ``end + allowed_lateness``. A session grows and merges, so its ``start`` and ``end``
    move: a session result supersedes the earlier results of its entity and window
    whose ``[start, end)`` it overlaps. Missing values are NaN.
    """

    entity: str
    partition: int
    window: str
    start: int
    end: int
    kind: str
    values: dict[str, float] = field(default_factory=dict)


class Plan:
    """The features over one window, with their aggregates' slot offsets."""

    __slots__ = (
        "feats",
        "gap",
        "hop",
        "index",
        "k",
        "label",
        "names",
        "nested",
        "session",
        "size",
        "template",
        "window",
    )

    def __init__(self, index: int, window: Window, feats: list[tuple[str, Aggregate, str | None]]):
        self.index = index
        self.window = window
        self.label = window.label
        self.session = isinstance(window, Session)
        if isinstance(window, Session):
            self.gap, self.size, self.hop, self.k = window.gap_ms, 0, 0, 0
        else:
            self.gap, self.size, self.hop = 0, window.size_ms, window.hop_ms
            self.k = window.size_ms // window.hop_ms
        self.names = tuple(name for name, _, _ in feats)
        offsets: list[tuple[Aggregate, int, str | None]] = []
        template: Slots = []
        for _, agg, fld in feats:
            offsets.append((agg, len(template), fld))
            template.extend(agg.init())
        self.feats = tuple(offsets)
        self.template = template
        self.nested = any(isinstance(v, list) for v in template)

    def new_pane(self) -> Slots:
        if self.nested:  # lists inside must not be shared between panes
            return [v.copy() if isinstance(v, list) else v for v in self.template]
        return self.template.copy()

    def merge_into(self, dst: Slots, src: Slots) -> None:
        for agg, o, _ in self.feats:
            agg.merge(dst, src, o)

    def merged(self, panes: Iterable[Slots | None]) -> Slots:
        acc = self.new_pane()
        for pane in panes:
            if pane is not None:
                self.merge_into(acc, pane)
        return acc

    def results(self, pane: Slots) -> list[float]:
        return [agg.result(pane, o) for agg, o, _ in self.feats]

    def empty(self) -> list[float]:
        return self.results(self.template)

    def window_values(self, panes: dict[int, Slots], end: int) -> list[float]:
        """The results of the pane window ``[end - size, end)`` from the panes present."""
        if self.k == 1:
            pane = panes.get(end - self.size)
            return self.results(pane) if pane is not None else self.empty()
        start = end - self.size
        return self.results(self.merged(panes.get(start + j * self.hop) for j in range(self.k)))


def compile_plans(feature_set: FeatureSet) -> tuple[Plan, ...]:
    """One plan per distinct window of ``feature_set``, in order of first use."""
    by_window: dict[Window, list[tuple[str, Aggregate, str | None]]] = {}
    for feature in feature_set.features:
        by_window.setdefault(feature.window, []).append((feature.name, feature.agg, feature.field))
    return tuple(Plan(i, w, feats) for i, (w, feats) in enumerate(by_window.items()))


def nan_to_none(values: Iterable[float]) -> list[float | None]:
    """JSON has no NaN: write missing values as null."""
    return [None if math.isnan(v) else v for v in values]


def none_to_nan(values: Iterable[Any]) -> list[float]:
    return [NAN if v is None else float(v) for v in values]
