"""Aggregates: small, mergeable, incremental accumulators with JSON-compatible state.

Each aggregate is a frozen, stateless *kernel*. Its state lives in ``width`` consecutive
slots of a plain Python ``list`` (a *pane*) that holds the state of every aggregate over
one window; ``o`` is the offset of the aggregate's first slot. Keeping state in flat
lists of floats, ints, ``None`` and lists of numbers keeps the hot path free of object
allocation, and makes a pane JSON as it is (checkpoints never pickle).

Contract of every kernel, relied on by the engine and proven by ``tests/features``:

* ``update(s, o, t, x)`` folds the value ``x`` observed at event time ``t`` (ms) in.
* ``merge(d, s, o)`` folds the state of pane ``s`` into pane ``d``. Merging the panes of
  disjoint time ranges gives the state of their union (this is how hopping windows are
  assembled from panes and sessions are joined).
* ``result(s, o)`` reads the value. An empty state reads 0 for ``count``, ``sum`` and
  ``distinct``, and NaN for the rest.
* The result does not depend on the order of updates, except for rounding of floating
  point sums (mean, std, ewma, slope) and for ties in event time, which ``first``, ``last``
  and ``lag`` break by arrival (like a stable sort by event time).

Count, sum, mean, min, max, std, first, last, EWMA and slope live here; distinct count
and lags, whose state is a bounded list, in :mod:`modelstream.features.sketches`. The
names the YAML accepts map to kernels in :data:`modelstream.features.spec.KINDS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

Slots = list[Any]
NAN = math.nan


@dataclass(frozen=True, slots=True)
class Aggregate:
    """Base of the kernels; see the module docstring for the contract."""

    kind: ClassVar[str] = ""
    width: ClassVar[int] = 1
    numeric: ClassVar[bool] = True  # False: accepts strings too (distinct)

    def init(self) -> Slots:
        return [0.0] * self.width

    def update(self, s: Slots, o: int, t: int, x: Any) -> None:
        raise NotImplementedError

    def merge(self, d: Slots, s: Slots, o: int) -> None:
        raise NotImplementedError

    def result(self, s: Slots, o: int) -> float:
        raise NotImplementedError

    def describe(self) -> str:
        return self.kind


@dataclass(frozen=True, slots=True)
class Count(Aggregate):
    """The number of events (that carry the feature's field, when it has one)."""

    kind: ClassVar[str] = "count"

    def init(self) -> Slots:
        return [0]

    def update(self, s: Slots, o: int, t: int, x: Any) -> None:
        s[o] += 1

    def merge(self, d: Slots, s: Slots, o: int) -> None:
        d[o] += s[o]

    def result(self, s: Slots, o: int) -> float:
        return float(s[o])


@dataclass(frozen=True, slots=True)
class Sum(Aggregate):
    kind: ClassVar[str] = "sum"

    def update(self, s: Slots, o: int, t: int, x: Any) -> None:
        s[o] += x

    def merge(self, d: Slots, s: Slots, o: int) -> None:
        d[o] += s[o]

    def result(self, s: Slots, o: int) -> float:
        return float(s[o])


@dataclass(frozen=True, slots=True)
class Mean(Aggregate):
    kind: ClassVar[str] = "mean"
    width: ClassVar[int] = 2  # n, sum

    def update(self, s: Slots, o: int, t: int, x: Any) -> None:
        s[o] += 1
        s[o + 1] += x

    def merge(self, d: Slots, s: Slots, o: int) -> None:
        d[o] += s[o]
        d[o + 1] += s[o + 1]

    def result(self, s: Slots, o: int) -> float:
        return float(s[o + 1] / s[o]) if s[o] else NAN


@dataclass(frozen=True, slots=True)
class Min(Aggregate):
    kind: ClassVar[str] = "min"

    def init(self) -> Slots:
        return [None]

    def update(self, s: Slots, o: int, t: int, x: Any) -> None:
        m = s[o]
        if m is None or x < m:
            s[o] = x

    def merge(self, d: Slots, s: Slots, o: int) -> None:
        if s[o] is not None:
            self.update(d, o, 0, s[o])

    def result(self, s: Slots, o: int) -> float:
        return NAN if s[o] is None else float(s[o])


@dataclass(frozen=True, slots=True)
class Max(Min):
    kind: ClassVar[str] = "max"

    def update(self, s: Slots, o: int, t: int, x: Any) -> None:
        m = s[o]
        if m is None or x > m:
            s[o] = x


@dataclass(frozen=True, slots=True)
class Std(Aggregate):
    """Population standard deviation (ddof 0), by Welford's update and Chan's merge."""

    kind: ClassVar[str] = "std"
    width: ClassVar[int] = 3  # n, mean, m2

    def update(self, s: Slots, o: int, t: int, x: Any) -> None:
        n = s[o] + 1
        delta = x - s[o + 1]
        mean = s[o + 1] + delta / n
        s[o] = n
        s[o + 1] = mean
        s[o + 2] += delta * (x - mean)

    def merge(self, d: Slots, s: Slots, o: int) -> None:
        nb = s[o]
        if not nb:
            return
        na = d[o]
        n = na + nb
        delta = s[o + 1] - d[o + 1]
        d[o + 1] += delta * nb / n
        d[o + 2] += s[o + 2] + delta * delta * na * nb / n
        d[o] = n

    def result(self, s: Slots, o: int) -> float:
        return math.sqrt(max(s[o + 2], 0.0) / s[o]) if s[o] else NAN


@dataclass(frozen=True, slots=True)
class First(Aggregate):
    """The value with the smallest event time (the earliest arrival among ties)."""

    kind: ClassVar[str] = "first"
    width: ClassVar[int] = 2  # t, value

    def init(self) -> Slots:
        return [None, None]

    def update(self, s: Slots, o: int, t: int, x: Any) -> None:
        if s[o] is None or t < s[o]:
            s[o] = t
            s[o + 1] = x

    def merge(self, d: Slots, s: Slots, o: int) -> None:
        if s[o] is not None:
            self.update(d, o, s[o], s[o + 1])

    def result(self, s: Slots, o: int) -> float:
        return NAN if s[o] is None else float(s[o + 1])


@dataclass(frozen=True, slots=True)
class Last(First):
    """The value with the greatest event time (the latest arrival among ties)."""

    kind: ClassVar[str] = "last"

    def update(self, s: Slots, o: int, t: int, x: Any) -> None:
        if s[o] is None or t >= s[o]:
            s[o] = t
            s[o + 1] = x


@dataclass(frozen=True, slots=True)
class Ewma(Aggregate):
    """Exponentially weighted mean in event time: weight ``2 ** -((T - t) / half_life)``.

    ``T`` is the greatest event time in the window, so the newest value weighs 1 and a
    value one half-life older weighs 1/2. Independent of arrival order (it is a weighted
    mean, not a recursive filter), hence mergeable.
    """

    kind: ClassVar[str] = "ewma"
    width: ClassVar[int] = 3  # reference time T, sum of weights, weighted sum
    half_life_ms: float = 60_000.0

    def init(self) -> Slots:
        return [None, 0.0, 0.0]

    def update(self, s: Slots, o: int, t: int, x: Any) -> None:
        ref = s[o]
        if ref is None:
            s[o] = t
            s[o + 1] = 1.0
            s[o + 2] = float(x)
        elif t > ref:
            scale = 2.0 ** (-(t - ref) / self.half_life_ms)
            s[o] = t
            s[o + 1] = s[o + 1] * scale + 1.0
            s[o + 2] = s[o + 2] * scale + x
        else:
            w = 2.0 ** (-(ref - t) / self.half_life_ms)
            s[o + 1] += w
            s[o + 2] += w * x

    def merge(self, d: Slots, s: Slots, o: int) -> None:
        if s[o] is None:
            return
        if d[o] is None:
            d[o : o + 3] = s[o : o + 3]
            return
        ref = max(d[o], s[o])
        wd = 2.0 ** (-(ref - d[o]) / self.half_life_ms)
        ws = 2.0 ** (-(ref - s[o]) / self.half_life_ms)
        d[o] = ref
        d[o + 1] = d[o + 1] * wd + s[o + 1] * ws
        d[o + 2] = d[o + 2] * wd + s[o + 2] * ws

    def result(self, s: Slots, o: int) -> float:
        return NAN if s[o] is None else float(s[o + 2] / s[o + 1])

    def describe(self) -> str:
        return f"ewma(half_life_ms={self.half_life_ms:g})"


@dataclass(frozen=True, slots=True)
class Slope(Aggregate):
    """Least-squares slope of the value against event time, in value units per second.

    Times are kept relative to the first event time seen (in seconds) so the sums stay
    small; merging shifts one pane's sums onto the other's reference. NaN with fewer
    than two distinct event times.
    """

    kind: ClassVar[str] = "slope"
    width: ClassVar[int] = 6  # n, ref_ms, st, sx, stt, stx

    def init(self) -> Slots:
        return [0, None, 0.0, 0.0, 0.0, 0.0]

    def update(self, s: Slots, o: int, t: int, x: Any) -> None:
        ref = s[o + 1]
        if ref is None:
            s[o + 1] = ref = t
        dt = (t - ref) / 1000.0
        s[o] += 1
        s[o + 2] += dt
        s[o + 3] += x
        s[o + 4] += dt * dt
        s[o + 5] += dt * x

    def merge(self, d: Slots, s: Slots, o: int) -> None:
        n = s[o]
        if not n:
            return
        if d[o + 1] is None:
            d[o : o + 6] = s[o : o + 6]
            return
        shift = (s[o + 1] - d[o + 1]) / 1000.0
        st, sx = s[o + 2], s[o + 3]
        d[o] += n
        d[o + 2] += st + n * shift
        d[o + 3] += sx
        d[o + 4] += s[o + 4] + 2.0 * shift * st + n * shift * shift
        d[o + 5] += s[o + 5] + shift * sx

    def result(self, s: Slots, o: int) -> float:
        n, st, sx, stt, stx = s[o], s[o + 2], s[o + 3], s[o + 4], s[o + 5]
        denom = n * stt - st * st
        if n < 2 or denom <= 1e-9 * max(n * stt, 1e-12):
            return NAN
        return float((n * stx - st * sx) / denom)
