"""Distinct counts beyond their exact range, and lags within a window, through the engine."""

from __future__ import annotations

import math

from modelstream.features.definitions import Feature, FeatureSet, Hopping, Tumbling
from modelstream.features.engine import FeatureEngine
from modelstream.features.sketches import Distinct, Lag


def _final_values(fs: FeatureSet, events: list[tuple[int, object]]) -> dict[tuple[str, int], dict]:
    engine = FeatureEngine(fs)
    for t, x in events:
        engine.process(0, "e", t, {"x": x})
    engine.flush()
    return {(r.window, r.start): r.values for r in engine.drain()}


def test_distinct_estimates_within_its_error_beyond_k_and_merges_like_one_sketch() -> None:
    k = 64
    fs = FeatureSet(
        "d",
        "1",
        [
            Feature("tumbling", field="x", agg=Distinct(k=k), window=Tumbling(1_000)),
            Feature("hopping", field="x", agg=Distinct(k=k), window=Hopping(1_000, 250)),
        ],
    )
    # a few values in [-1000, 0), then 3,000 distinct values, each twice, in [0, 1000)
    events: list[tuple[int, object]] = [(-500 + i, f"w{i}") for i in range(10)]
    events += [(1_000 * i // 6_000, f"v{i % 3_000}") for i in range(6_000)]
    got = _final_values(fs, events)
    estimate = got[("tumbling(1000)", 0)]["tumbling"]
    stderr = 1 / math.sqrt(k - 2)  # the KMV estimator's relative standard error
    assert abs(estimate - 3_000) <= 3 * stderr * 3_000, estimate
    # [0, 1000) assembled from four 250 ms panes: the union of their sketches is the
    # sketch of all the values, so the estimate is the very same number
    assert got[("hopping(1000,250)", 0)]["hopping"] == estimate
    assert got[("tumbling(1000)", -1_000)]["tumbling"] == 10.0  # below k: exact


def test_lag_looks_back_within_its_window_only() -> None:
    fs = FeatureSet("l", "1", [Feature("prev", field="x", agg=Lag(1), window=Tumbling(100))])
    got = _final_values(fs, [(10, 1.0), (50, 2.0), (120, 3.0), (150, 4.0), (260, 5.0)])
    assert got[("tumbling(100)", 0)]["prev"] == 1.0
    assert got[("tumbling(100)", 100)]["prev"] == 3.0  # not 2.0 from the window before
    assert math.isnan(got[("tumbling(100)", 200)]["prev"])  # one reading: nothing before
