"""Bounded collections of observations in event time: sliding windows and reference samples.

* :class:`EventWindow` keeps observations ``(event_time, item)`` in arrival order, at most
  ``max_items`` of them. :meth:`EventWindow.current` returns the ones in the window ending
  at a watermark: event time within ``window_ms`` of it, then at most the ``window_count``
  latest by event time. Records of several partitions arrive out of event-time order, so
  the window is selected by time at read, not by arrival.
* :class:`EarliestSample` keeps the ``size`` values with the *earliest* event times ever
  offered: the first window after deployment, whatever order partitions are read in. It
  can be replaced by a given sample (:meth:`EarliestSample.set`), which then stays.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class EventWindow(Generic[T]):
    """A sliding window of event time and count over observations (see the module)."""

    def __init__(self, window_ms: int | None, window_count: int | None, max_items: int) -> None:
        self._window_ms = window_ms
        self._window_count = window_count
        self._items: deque[tuple[int, T]] = deque(maxlen=max_items)

    def add(self, event_time: int, item: T) -> None:
        self._items.append((event_time, item))

    def trim(self, watermark: int) -> None:
        """Drop, from the oldest arrivals, observations already out of the time window."""
        if self._window_ms is None:
            return
        cutoff = watermark - self._window_ms
        while self._items and self._items[0][0] < cutoff:
            self._items.popleft()

    def current(self, watermark: int) -> list[tuple[int, T]]:
        """Observations in the window ending at ``watermark``, oldest event time first."""
        cutoff = None if self._window_ms is None else watermark - self._window_ms
        chosen = [pair for pair in self._items if cutoff is None or pair[0] >= cutoff]
        chosen.sort(key=lambda pair: pair[0])
        if self._window_count is not None:
            chosen = chosen[-self._window_count :]
        return chosen

    def values(self, watermark: int) -> list[T]:
        return [item for _, item in self.current(watermark)]

    def __len__(self) -> int:
        return len(self._items)


class EarliestSample(Generic[T]):
    """The ``size`` values of earliest event time offered, or a sample set explicitly."""

    def __init__(self, size: int) -> None:
        self._size = size
        # A max-heap on event time (negated) so the latest of the kept values is evicted.
        self._heap: list[tuple[int, int, T]] = []
        self._tie = itertools.count()
        self._fixed: list[T] | None = None
        self.source = "first-window"

    def offer(self, event_time: int, value: T) -> None:
        if self._fixed is not None:
            return
        entry = (-event_time, next(self._tie), value)
        if len(self._heap) < self._size:
            heapq.heappush(self._heap, entry)
        elif -self._heap[0][0] > event_time:
            heapq.heapreplace(self._heap, entry)

    def set(self, values: Iterable[T], source: str = "api") -> None:
        """Use ``values`` as the reference from now on (offers are then ignored)."""
        self._fixed = list(values)
        self.source = source

    @property
    def fixed(self) -> bool:
        return self._fixed is not None

    def values(self) -> list[T]:
        if self._fixed is not None:
            return list(self._fixed)
        return [value for _, _, value in self._heap]

    def __len__(self) -> int:
        return len(self._fixed) if self._fixed is not None else len(self._heap)
