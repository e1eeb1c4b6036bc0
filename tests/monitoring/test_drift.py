"""PSI and KS against hand-computed values; the drift verdict; windows and references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from modelstream.monitoring.drift import (
    bin_shares,
    ks_test,
    measure,
    psi,
    psi_from_shares,
    quantile_edges,
)
from modelstream.monitoring.window import EarliestSample, EventWindow


def test_psi_of_shares_by_hand() -> None:
    # (0.25 - 0.5) ln(0.25/0.5) + (0.75 - 0.5) ln(0.75/0.5)
    expected = 0.25 * math.log(2) + 0.25 * math.log(1.5)
    assert psi_from_shares([0.5, 0.5], [0.25, 0.75]) == pytest.approx(expected)
    assert expected == pytest.approx(0.274653, abs=1e-6)
    assert psi_from_shares([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0


def test_psi_bins_by_reference_quantiles() -> None:
    # Median of the reference is 2.5: bins (-inf, 2.5] and (2.5, inf).
    assert quantile_edges([1, 2, 3, 4], bins=2).tolist() == [2.5]
    assert bin_shares([1, 3, 4, 5], np.array([2.5])).tolist() == [0.25, 0.75]
    assert psi([1, 2, 3, 4], [1, 3, 4, 5], bins=2) == pytest.approx(0.274653, abs=1e-6)


def test_psi_floors_empty_bins() -> None:
    # Every current value in the upper bin: shares (0.5, 0.5) -> (eps, 1).
    eps = 1e-4
    expected = (eps - 0.5) * math.log(eps / 0.5) + 0.5 * math.log(1 / 0.5)
    assert psi([1, 2, 3, 4], [5, 6, 7], bins=2, eps=eps) == pytest.approx(expected)


def _ks_exact_p(a: list[int], b: list[int], d: float) -> float:
    """P(D >= d) by enumerating every split of the pooled values (the permutation null)."""
    pooled = sorted(a + b)
    n = len(a)
    hits = total = 0
    for chosen in itertools.combinations(range(len(pooled)), n):
        x = [pooled[i] for i in chosen]
        y = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        gap = max(
            abs(sum(v <= t for v in x) / len(x) - sum(v <= t for v in y) / len(y)) for t in pooled
        )
        hits += gap >= d - 1e-12
        total += 1
    return hits / total


def test_ks_by_hand() -> None:
    # ECDFs of {1,2,3,4} and {3,4,5,6} differ most at 2: 2/4 - 0/4 = 0.5.
    result = ks_test([1, 2, 3, 4], [3, 4, 5, 6])
    assert result.statistic == pytest.approx(0.5)
    assert result.p_value == pytest.approx(_ks_exact_p([1, 2, 3, 4], [3, 4, 5, 6], 0.5))
    disjoint = ks_test([1, 2, 3, 4], [5, 6, 7, 8])
    assert disjoint.statistic == 1.0
    # Only 2 of the 70 splits separate completely: p = 2/70.
    assert disjoint.p_value == pytest.approx(2 / 70)


def test_measure_flags_a_shift_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, 1000)
    same = measure(reference, rng.normal(0, 1, 1000))
    shifted = measure(reference, rng.normal(1, 1, 1000))
    assert not same.drifted and same.psi < 0.1
    assert shifted.drifted and shifted.psi > 0.2 and shifted.ks_p_value < 1e-6
    assert shifted.to_json()["n_current"] == 1000
    with pytest.raises(ValueError):
        ks_test([], [1.0])


def test_event_window_selects_by_event_time_then_count() -> None:
    window: EventWindow[str] = EventWindow(window_ms=100, window_count=2, max_items=10)
    for t, item in [(50, "a"), (300, "d"), (250, "c"), (150, "b")]:
        window.add(t, item)
    # Window ending at 300: event times >= 200 are c and d; arrival order does not matter.
    assert window.values(300) == ["c", "d"]
    window.trim(300)
    assert len(window) == 3  # "a" left from the front; "b" waits behind "d"


def test_earliest_sample_keeps_the_first_window_whatever_the_order() -> None:
    sample: EarliestSample[float] = EarliestSample(3)
    for t in [5, 1, 9, 3, 2, 8]:
        sample.offer(t, float(t))
    assert sorted(sample.values()) == [1.0, 2.0, 3.0]
    sample.set([7.0], source="api")
    sample.offer(0, 0.0)
    assert sample.values() == [7.0] and sample.fixed and sample.source == "api"
