"""Parity: the streaming engine and the offline build against independent references.

The first property delivers events with a disorder no larger than the out-of-orderness
(nothing is late) and checks the last result of every window instance against the
offline build over the events sorted by time and a brute-force computation. The second
delivers them with a disorder beyond out-of-orderness + lateness and checks, against an
independent watermark simulator (``reference.simulate``), which records are late and
every window's final result over the accepted records, streaming and offline.
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelstream.features import offline
from modelstream.features.engine import FeatureEngine
from modelstream.features.plan import WindowResult
from tests.features.reference import feature_set, reference_windows, same, simulate

Event = tuple[str, int, float]
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def disordered(draw: st.DrawFn, max_disorder: int = 40) -> tuple[list[Event], int]:
    n = draw(st.integers(0, 40))
    disorder = draw(st.integers(0, max_disorder))
    events = [
        (
            draw(st.sampled_from(["a", "b", "c"])),
            draw(st.integers(0, 400)),
            float(draw(st.integers(-5, 5))),
        )
        for _ in range(n)
    ]
    jitter = [draw(st.integers(0, disorder)) for _ in range(n)]
    arrival = [
        e
        for _, _, e in sorted(
            zip(
                (e[1] + j for e, j in zip(events, jitter, strict=True)),
                range(n),
                events,
                strict=True,
            )
        )
    ]
    return arrival, disorder


def _partition(entity: str) -> int:
    return 0 if entity == "a" else 1


def _stream(fs, events: list[Event]) -> tuple[list[WindowResult], list[tuple[str, int]]]:
    engine = FeatureEngine(fs)
    late = []
    for entity, t, x in events:
        if engine.process(_partition(entity), entity, t, {"x": x}) is not None:
            late.append((entity, t))
    engine.flush()
    return engine.drain(), late


def _entries(events: list[Event]) -> list[offline.Entry]:
    offsets = [0, 0]
    out = []
    for entity, t, x in events:
        p = _partition(entity)
        out.append(offline.Entry(p, offsets[p], row={"entity": entity, "timestamp": t, "x": x}))
        offsets[p] += 1
    return out


def _last(results: list[WindowResult]) -> dict[tuple[str, str, int], dict[str, float]]:
    return {(r.entity, r.window, r.start): r.values for r in results}


@SETTINGS
@given(disordered(), st.integers(0, 30))
def test_streaming_equals_batch_over_sorted_events(drawn, lateness) -> None:
    events, disorder = drawn
    fs = feature_set(ooo=disorder, lateness=lateness)
    streamed, late = _stream(fs, events)
    assert late == []  # disorder within the out-of-orderness is never late
    batch = offline.build(fs, _entries(sorted(events, key=lambda e: e[1])))
    expected = reference_windows(fs, events)
    got, offline_got = _last(streamed), _last(batch.results)
    assert got.keys() == expected.keys() == offline_got.keys()
    for key, values in expected.items():
        for name, want in values.items():
            if name.startswith("distinct") and math.isnan(want):
                continue  # beyond k the sketch estimates; exactness is not claimed
            assert same(got[key][name], want), (key, name, got[key][name], want)
            assert same(offline_got[key][name], got[key][name]), (key, name)


def _final(results: list[WindowResult]) -> dict[tuple[str, str, int], dict[str, float]]:
    """What a consumer of the results keeps: per instance the last result; a session
    result replaces the earlier ones of its entity it overlaps (the session grew)."""
    out: dict[tuple[str, str, int], tuple[int, dict[str, float]]] = {}
    for r in results:
        if r.window.startswith("session"):
            for key in [k for k, (end, _) in out.items() if k[:2] == (r.entity, r.window)]:
                if key[2] < r.end and r.start < out[key][0]:
                    del out[key]
        out[(r.entity, r.window, r.start)] = (r.end, r.values)
    return {key: values for key, (_, values) in out.items()}


def _assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key, values in want.items():
        for name, expected in values.items():
            if name.startswith("distinct") and math.isnan(expected):
                continue  # beyond k the sketch estimates; exactness is not claimed
            assert same(got[key][name], expected), (key, name, got[key][name], expected)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(disordered(max_disorder=150), st.integers(0, 30), st.integers(0, 40))
def test_late_records_and_final_results_match_an_independent_reference(
    drawn, ooo, lateness
) -> None:
    events, _ = drawn
    fs = feature_set(ooo=ooo, lateness=lateness)
    log = [(_partition(e), e, t, x) for e, t, x in events]
    want, want_late = simulate(fs, log)

    engine = FeatureEngine(fs)
    late = [
        i
        for i, (p, entity, t, x) in enumerate(log)
        if engine.process(p, entity, t, {"x": x}) is not None
    ]
    engine.flush()
    assert late == want_late  # exactly the records beyond out-of-orderness + lateness
    _assert_same(_final(engine.drain()), want)  # accepted records, and only those, count

    batch = offline.build(fs, _entries(events))  # the same log, replayed offline
    index = {(p, o): i for i, (p, o) in enumerate(_positions(events))}
    assert [index[(r.partition, r.offset)] for r in batch.late] == want_late
    _assert_same(_final(batch.results), want)


def _positions(events: list[Event]) -> list[tuple[int, int]]:
    offsets = [0, 0]
    out = []
    for entity, _, _ in events:
        p = _partition(entity)
        out.append((p, offsets[p]))
        offsets[p] += 1
    return out
