"""Metrics against scikit-learn; intervals and paired tests on constructed cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from modelstream.monitoring import stats


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = 200 + seed * 50, 2 + seed % 3
    y = rng.integers(0, k, n)
    y[:k] = np.arange(k)  # every class present
    proba = rng.dirichlet(np.ones(k), n)
    pred = proba.argmax(axis=1)
    assert stats.accuracy(y, pred) == pytest.approx(skm.accuracy_score(y, pred))
    assert stats.log_loss(y, proba) == pytest.approx(skm.log_loss(y, proba, labels=range(k)))
    binary = (y == 0).astype(int)
    score = np.round(proba[:, 0], 2)  # rounding makes ties, which AUC counts as half
    assert stats.roc_auc(binary, score) == pytest.approx(skm.roc_auc_score(binary, score))
    truth, guess = rng.normal(size=n), rng.normal(size=n)
    assert stats.mae(truth, guess) == pytest.approx(skm.mean_absolute_error(truth, guess))
    assert stats.rmse(truth, guess) == pytest.approx(np.sqrt(skm.mean_squared_error(truth, guess)))


def test_binary_log_loss_takes_p_of_class_one() -> None:
    y = np.array([0, 1, 1, 0])
    p1 = np.array([0.1, 0.8, 0.6, 0.3])
    assert stats.log_loss(y, p1) == pytest.approx(skm.log_loss(y, p1))


def test_bad_inputs_raise_value_error() -> None:
    with pytest.raises(ValueError, match="both classes"):
        stats.roc_auc(np.ones(3), np.arange(3))
    with pytest.raises(ValueError, match="equal length"):
        stats.mae(np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match=r"0\.\.k-1"):
        stats.log_loss(np.array([0, 3]), np.full((2, 2), 0.5))


def test_wilson_interval_known_values() -> None:
    low, high = stats.wilson_interval(81, 263)  # Newcombe (1998), example (a)
    assert low == pytest.approx(0.2553, abs=1e-3) and high == pytest.approx(0.3662, abs=1e-3)
    assert stats.wilson_interval(0, 10)[0] == 0.0
    assert stats.wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_bootstrap_interval_covers_the_mean_and_is_reproducible() -> None:
    values = np.random.default_rng(1).normal(5.0, 1.0, 400)
    low, high = stats.bootstrap_interval(np.mean, values, seed=3)
    assert low < values.mean() < high and high - low < 0.3
    assert stats.bootstrap_interval(np.mean, values, seed=3) == (low, high)


def test_mcnemar_clearly_better_and_identical() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(500) < 0.9
    b = rng.random(500) < 0.7
    test = stats.mcnemar(a, b)
    assert test.test == "mcnemar-chi2" and test.p_value < 0.01 and test.effect > 0
    assert stats.mcnemar(a, a).p_value == 1.0
    # Few discordant pairs: the exact test; 10 against 0 is p = 2 / 2**10.
    c = np.ones(50, dtype=bool)
    d = c.copy()
    d[:10] = False
    exact = stats.mcnemar(c, d)
    assert exact.test == "mcnemar-exact" and exact.p_value == pytest.approx(2 / 1024)


def test_paired_bootstrap_clearly_better_and_identical() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(size=300)
    loss_a = np.abs(truth - (truth + rng.normal(0, 0.2, 300)))
    loss_b = np.abs(truth - (truth + rng.normal(0, 1.0, 300)))
    test = stats.paired_bootstrap(loss_a, loss_b, seed=1)
    assert test.p_value < 0.01 and test.effect > 0
    assert stats.paired_bootstrap(loss_a, loss_a).p_value == 1.0
    noisy = stats.paired_bootstrap(loss_a, rng.permutation(loss_a), seed=2)
    assert noisy.p_value > 0.05


def test_latency_summary() -> None:
    summary = stats.latency_summary(np.array([1.0, 2.0, 3.0, np.nan, 100.0]))
    assert summary.n == 4 and summary.p50 == 2.5 and summary.max == 100.0
    assert stats.latency_summary(np.array([])).n == 0
