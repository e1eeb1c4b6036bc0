"""A brute-force reference for window results, and stream generators for the tests."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from modelstream.features.aggregates import (
    Count,
    Ewma,
    First,
    Last,
    Max,
    Mean,
    Min,
    Slope,
    Std,
    Sum,
)
from modelstream.features.definitions import Feature, FeatureSet, Hopping, Session, Tumbling
from modelstream.features.sketches import Distinct, Lag

NAN = math.nan
AGGS = [
    Count(),
    Sum(),
    Mean(),
    Min(),
    Max(),
    Std(),
    First(),
    Last(),
    Ewma(40.0),
    Slope(),
    Distinct(k=8),
    Lag(2),
]
WINDOWS = [Tumbling(50), Hopping(60, 20), Session(25)]


def feature_set(ooo: int, lateness: int) -> FeatureSet:
    feats = [
        Feature(f"{agg.kind}_{w}", field="x", agg=agg, window=window)
        for w, window in enumerate(WINDOWS)
        for agg in AGGS
    ]
    return FeatureSet("ref", "1", feats, out_of_orderness_ms=ooo, allowed_lateness_ms=lateness)


def brute(agg: Any, events: list[tuple[int, float]]) -> float:
    """``agg`` over ``events`` (sorted by time, ties in arrival order)."""
    xs = [x for _, x in events]
    ts = [t for t, _ in events]
    n = len(xs)
    if isinstance(agg, Count):
        return float(n)
    if isinstance(agg, Sum):
        return float(sum(xs))
    if isinstance(agg, Distinct):
        exact = len(set(xs))
        return float(exact) if exact < agg.k else NAN  # beyond k: an estimate, not compared
    if n == 0:
        return NAN
    if isinstance(agg, Mean):
        return sum(xs) / n
    if isinstance(agg, Max):  # before Min: Max subclasses it
        return max(xs)
    if isinstance(agg, Min):
        return min(xs)
    if isinstance(agg, Std):
        m = sum(xs) / n
        return math.sqrt(sum((x - m) ** 2 for x in xs) / n)
    if isinstance(agg, Last):  # before First: Last subclasses it
        return xs[-1]
    if isinstance(agg, First):
        return xs[0]
    if isinstance(agg, Lag):
        return xs[-1 - agg.n] if n > agg.n else NAN
    if isinstance(agg, Ewma):
        top = max(ts)
        w = [2.0 ** (-(top - t) / agg.half_life_ms) for t in ts]
        return sum(a * b for a, b in zip(w, xs, strict=True)) / sum(w)
    if isinstance(agg, Slope):
        secs = [t / 1000 for t in ts]
        mt, mx = sum(secs) / n, sum(xs) / n
        var = sum((t - mt) ** 2 for t in secs)
        if len(set(ts)) < 2:
            return NAN
        return sum((t - mt) * (x - mx) for t, x in zip(secs, xs, strict=True)) / var
    raise AssertionError(agg)


def reference_windows(
    fs: FeatureSet, events: list[tuple[str, int, float]]
) -> dict[tuple[str, str, int], dict[str, float]]:
    """Every window instance holding events: (entity, window label, start) -> values."""
    by_entity: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for entity, t, x in sorted(events, key=lambda e: e[1]):  # stable: ties keep arrival
        by_entity[entity].append((t, x))
    out: dict[tuple[str, str, int], dict[str, float]] = {}
    for entity, evs in by_entity.items():
        for window in fs.windows:
            feats = [f for f in fs.features if f.window == window]
            for start, members in _instances(window, evs):
                out[(entity, window.label, start)] = {f.name: brute(f.agg, members) for f in feats}
    return out


def _instances(window: Any, evs: list[tuple[int, float]]) -> list[tuple[int, list]]:
    if isinstance(window, Session):
        sessions: list[list[tuple[int, float]]] = []
        for t, x in evs:
            if sessions and t - sessions[-1][-1][0] < window.gap_ms:
                sessions[-1].append((t, x))
            else:
                sessions.append([(t, x)])
        return [(s[0][0], s) for s in sessions]
    starts = set()
    for t, _ in evs:
        first = (t - window.size_ms) // window.hop_ms * window.hop_ms + window.hop_ms
        starts.update(range(first, t + 1, window.hop_ms))
    return [(s, [(t, x) for t, x in evs if s <= t < s + window.size_ms]) for s in sorted(starts)]


def same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)


def simulate(
    fs: FeatureSet, log: list[tuple[int, str, int, float]]
) -> tuple[dict[tuple[str, str, int], dict[str, float]], list[int]]:
    """An independent watermark simulator: which records are late, and final results.

    ``log`` is ``(partition, entity, t, x)`` in arrival order. Per partition the
    watermark before a record is ``max(t - out_of_orderness)`` over the records before
    it. A record is left out of a tumbling/hopping instance ``[s, s + size)`` that is
    final (``s + size + lateness <= wm``) and kept in the others; for a session it is
    late when it would join a final session (one whose ``end + lateness <= wm``, the
    sessions being those of the records accepted so far) or, joining none, when
    ``[t, t + gap)`` would be final. It is reported late when left out of anything.
    Returns every instance's values over its accepted records (brute force, as
    :func:`reference_windows`) and the arrival indices of the late records.
    """
    lateness, ooo = fs.allowed_lateness_ms, fs.out_of_orderness_ms
    wms: dict[int, int] = {}
    members: dict[tuple[str, str, int], list[tuple[int, int, float]]] = defaultdict(list)
    accepted: dict[tuple[str, str], list[tuple[int, int, float]]] = defaultdict(list)
    late: list[int] = []
    for i, (partition, entity, t, x) in enumerate(log):
        wm = wms.get(partition)
        is_late = False
        for window in fs.windows:
            if isinstance(window, Session):
                gap = window.gap_ms
                mine = accepted[(entity, window.label)]
                joined = [s for s in _sessions(mine, gap) if s[0][1] - gap < t < s[-1][1] + gap]
                final = [s for s in joined if wm is not None and s[-1][1] + gap + lateness <= wm]
                alone_final = wm is not None and t + gap + lateness <= wm
                if final or (not joined and alone_final):
                    is_late = True
                else:
                    mine.append((i, t, x))
                continue
            first = (t - window.size_ms) // window.hop_ms * window.hop_ms + window.hop_ms
            for start in range(first, t + 1, window.hop_ms):
                if wm is not None and start + window.size_ms + lateness <= wm:
                    is_late = True
                else:
                    members[(entity, window.label, start)].append((i, t, x))
        if is_late:
            late.append(i)
        wms[partition] = t - ooo if wm is None else max(wm, t - ooo)
    for (entity, label), mine in accepted.items():
        gap = next(w.gap_ms for w in fs.windows if w.label == label)  # type: ignore[union-attr]
        for s in _sessions(mine, gap):
            members[(entity, label, s[0][1])] = s
    out: dict[tuple[str, str, int], dict[str, float]] = {}
    for (entity, label, start), evs in members.items():
        feats = [f for f in fs.features if f.window.label == label]
        ordered = [(t, x) for _, t, x in sorted(evs, key=lambda e: (e[1], e[0]))]
        out[(entity, label, start)] = {f.name: brute(f.agg, ordered) for f in feats}
    return out, late


def _sessions(evs: list[tuple[int, int, float]], gap: int) -> list[list[tuple[int, int, float]]]:
    """``evs`` (arrival index, t, x) grouped into sessions: runs with gaps below ``gap``."""
    sessions: list[list[tuple[int, int, float]]] = []
    for e in sorted(evs, key=lambda e: (e[1], e[0])):
        if sessions and e[1] - sessions[-1][-1][1] < gap:
            sessions[-1].append(e)
        else:
            sessions.append([e])
    return sessions
