"""Aggregates whose state is a bounded list: distinct count (a KMV sketch) and lags.

Kernels under the contract of :mod:`modelstream.features.aggregates`; their state is a
list of numbers (hashes, or ``[t, value]`` pairs), so it stays JSON as it is.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass
from typing import Any, ClassVar

from modelstream.features.aggregates import NAN, Aggregate, Slots


def value_hash(x: Any) -> int:
    """A stable 52-bit hash of a value (exact in a double, the same in every process)."""
    text = repr(float(x)) if isinstance(x, int | float) else str(x)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 12


_HASH_SPACE = float(1 << 52)


@dataclass(frozen=True, slots=True)
class Distinct(Aggregate):
    """Distinct count by a k-minimum-values sketch: exact below ``k`` distinct values.

    The state is the sorted list of the ``k`` smallest 52-bit hashes seen. With fewer than
    ``k`` distinct values the count is exact (barring a hash collision, about 1 in 2**52);
    beyond, the estimate ``(k - 1) / h_k`` has a relative standard error of about
    ``1 / sqrt(k - 2)`` (6% for the default k=256). Mergeable: union, keep the k smallest.
    """

    kind: ClassVar[str] = "distinct"
    numeric: ClassVar[bool] = False
    k: int = 256

    def init(self) -> Slots:
        return [[]]

    def update(self, s: Slots, o: int, t: int, x: Any) -> None:
        self._add(s[o], value_hash(x))

    def _add(self, hashes: list[int], h: int) -> None:
        size = len(hashes)
        if size >= self.k and h >= hashes[-1]:
            return
        i = bisect_left(hashes, h)
        if i < size and hashes[i] == h:
            return
        hashes.insert(i, h)
        if size >= self.k:
            hashes.pop()

    def merge(self, d: Slots, s: Slots, o: int) -> None:
        for h in s[o]:
            self._add(d[o], h)

    def result(self, s: Slots, o: int) -> float:
        hashes = s[o]
        if len(hashes) < self.k:
            return float(len(hashes))
        return float((self.k - 1) / ((hashes[-1] + 1) / _HASH_SPACE))

    def describe(self) -> str:
        return f"distinct(k={self.k})"


@dataclass(frozen=True, slots=True)
class Lag(Aggregate):
    """The value ``n`` events before the latest one, in event-time order (``n=0``: last).

    Like every aggregate it is computed over one window instance: the ``n``-th previous
    event *of that instance*, never one from an earlier window. ``Lag(1)`` over
    ``Tumbling(60_000)`` is the second-to-last reading of the minute, NaN when the minute
    has fewer than two; over a session, the second-to-last of the session. For the value
    before the latest whatever the window, use a window that spans it (a session, or a
    hopping window as long as the look-back). Keeps the ``n + 1`` latest ``[t, value]``
    pairs, sorted by event time (ties by arrival). NaN while the window holds ``n``
    events or fewer.
    """

    kind: ClassVar[str] = "lag"
    n: int = 1

    def init(self) -> Slots:
        return [[]]

    def update(self, s: Slots, o: int, t: int, x: Any) -> None:
        pairs = s[o]
        keep = self.n + 1
        if len(pairs) >= keep and t < pairs[0][0]:
            return
        if pairs and t < pairs[-1][0]:
            insort(pairs, [t, x], key=_time_of)
        else:
            pairs.append([t, x])
        if len(pairs) > keep:
            del pairs[0]

    def merge(self, d: Slots, s: Slots, o: int) -> None:
        for t, x in s[o]:
            pairs = d[o]
            i = bisect_right(pairs, t, key=_time_of)
            pairs.insert(i, [t, x])
        extra = len(d[o]) - (self.n + 1)
        if extra > 0:
            del d[o][:extra]

    def result(self, s: Slots, o: int) -> float:
        pairs = s[o]
        return float(pairs[0][1]) if len(pairs) == self.n + 1 else NAN

    def describe(self) -> str:
        return f"lag(n={self.n})"


def _time_of(pair: list[Any]) -> Any:
    return pair[0]
