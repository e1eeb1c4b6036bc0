"""Quality metrics, confidence intervals and paired tests: pure functions on numpy arrays.

Shared by ``modelstream compare``, the monitor and the trainer. Every function takes
plain arrays, returns plain values, and raises ``ValueError`` on empty or mismatched
input (a programming error, not an operator's). Randomness (bootstrap) comes only from
an explicit ``seed``, so results are reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]
FloatArray = npt.NDArray[np.float64]


def _check(*arrays: Array) -> int:
    n = len(arrays[0])
    if n == 0 or any(len(a) != n for a in arrays):
        raise ValueError("metrics need non-empty arrays of equal length")
    return n


# -- classification -------------------------------------------------------------------


def accuracy(y_true: Array, y_pred: Array) -> float:
    """Share of predictions equal to the truth."""
    _check(y_true, y_pred)
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def log_loss(y_true: Array, proba: Array, eps: float | None = None) -> float:
    """Mean negative log-likelihood of the true class; ``proba[i, c]`` is P(class c).

    Classes are the column indices: ``y_true`` holds integers ``0..k-1``. A 1-D ``proba``
    is P(class 1) of a binary problem. Rows are renormalised and clipped to
    ``[eps, 1 - eps]`` (default: float64 machine epsilon), as scikit-learn does.
    """
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim == 1:
        p = np.column_stack([1.0 - p, p])
    y = np.asarray(y_true).astype(np.int64)
    _check(y, p)
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError("log_loss needs classes 0..k-1 matching the probability columns")
    eps = float(np.finfo(np.float64).eps) if eps is None else eps
    p = np.clip(p, eps, 1 - eps)
    p = p / p.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(p[np.arange(len(y)), y])))


def roc_auc(y_true: Array, score: Array) -> float:
    """Area under the ROC curve of a binary problem (ties count one half).

    Computed as the Mann-Whitney U statistic over ranks, exactly what
    ``sklearn.metrics.roc_auc_score`` gives. Raises ``ValueError`` with one class only.
    """
    _check(y_true, score)
    y = np.asarray(y_true).astype(bool)
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        raise ValueError("roc_auc needs both classes in y_true")
    from scipy import stats as sps  # lazily: importing it takes 0.6 s

    ranks = sps.rankdata(np.asarray(score, dtype=np.float64))
    u = float(ranks[y].sum()) - positives * (positives + 1) / 2
    return u / (positives * negatives)


# -- regression -----------------------------------------------------------------------


def mae(y_true: Array, y_pred: Array) -> float:
    _check(y_true, y_pred)
    return float(np.mean(np.abs(np.asarray(y_true, float) - np.asarray(y_pred, float))))


def rmse(y_true: Array, y_pred: Array) -> float:
    _check(y_true, y_pred)
    diff = np.asarray(y_true, float) - np.asarray(y_pred, float)
    return float(np.sqrt(np.mean(diff**2)))


# -- intervals ------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (good near 0 and 1)."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError("wilson_interval needs 0 <= successes <= n and n > 0")
    from scipy import stats as sps  # lazily: importing it takes 0.6 s

    z = float(sps.norm.ppf(0.5 + confidence / 2))
    phat = successes / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * np.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def bootstrap_interval(
    statistic: Callable[..., float],
    *arrays: Array,
    confidence: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(*arrays)``, resampling rows jointly.

    Resamples on which ``statistic`` raises ``ValueError`` (e.g. one class only, for
    AUC) are skipped; with none left the interval is ``(nan, nan)``.
    """
    n = _check(*arrays)
    rng = np.random.default_rng(seed)
    columns = [np.asarray(a) for a in arrays]
    values: list[float] = []
    for _ in range(n_resamples):
        idx = rng.integers(0, n, n)
        try:
            values.append(statistic(*(c[idx] for c in columns)))
        except ValueError:
            continue
    if not values:
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


# -- paired tests ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PairedTest:
    """A paired significance test of A against B on the same rows.

    ``effect`` is oriented so that positive favours A: for McNemar, the accuracy of A
    minus that of B; for the bootstrap, B's mean loss minus A's.
    """

    test: str
    statistic: float
    p_value: float
    effect: float
    n: int


def mcnemar(a_correct: Array, b_correct: Array, exact_below: int = 25) -> PairedTest:
    """McNemar's test on paired right/wrong outcomes of two classifiers.

    Only discordant pairs count: ``b01`` (A right, B wrong) and ``b10``. With fewer than
    ``exact_below`` of them the exact binomial test is used, else the chi-squared test
    with continuity correction. No discordant pair gives p = 1.
    """
    n = _check(a_correct, b_correct)
    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    b01 = int(np.sum(a & ~b))
    b10 = int(np.sum(~a & b))
    effect = (b01 - b10) / n
    discordant = b01 + b10
    if discordant == 0:
        return PairedTest("mcnemar-exact", 0.0, 1.0, effect, n)
    from scipy import stats as sps  # lazily: importing it takes 0.6 s

    if discordant < exact_below:
        p = float(sps.binomtest(b01, discordant, 0.5).pvalue)
        return PairedTest("mcnemar-exact", float(min(b01, b10)), min(1.0, p), effect, n)
    chi2 = (abs(b01 - b10) - 1) ** 2 / discordant
    return PairedTest("mcnemar-chi2", float(chi2), float(sps.chi2.sf(chi2, 1)), effect, n)


def paired_bootstrap(
    loss_a: Array, loss_b: Array, n_resamples: int = 2000, seed: int = 0
) -> PairedTest:
    """Two-sided paired bootstrap test that A and B have the same mean loss.

    On per-row differences ``d = loss_b - loss_a``, resample rows, and count resampled
    means at least as far from the observed mean as the observed mean is from 0 (the
    null shifted to 0); ``p = (1 + count) / (1 + n_resamples)``. Identical losses give
    p = 1.
    """
    n = _check(loss_a, loss_b)
    d = np.asarray(loss_b, dtype=np.float64) - np.asarray(loss_a, dtype=np.float64)
    observed = float(d.mean())
    rng = np.random.default_rng(seed)
    extreme = 0
    # Chunks bound memory at about 8 MB whatever n is.
    chunk = max(1, min(n_resamples, 1_000_000 // n))
    done = 0
    while done < n_resamples:
        k = min(chunk, n_resamples - done)
        means = d[rng.integers(0, n, (k, n))].mean(axis=1)
        extreme += int(np.sum(np.abs(means - observed) >= abs(observed) - 1e-12))
        done += k
    p = (1 + extreme) / (1 + n_resamples)
    return PairedTest("paired-bootstrap", observed, min(1.0, p), observed, n)


# -- latency --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Latency in ms: count, mean and percentiles (NaN when there is none)."""

    n: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float


def latency_summary(latencies_ms: Array) -> LatencySummary:
    """Summary of latencies in ms; NaNs are ignored."""
    values = np.asarray(latencies_ms, dtype=np.float64)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        nan = float("nan")
        return LatencySummary(0, nan, nan, nan, nan, nan)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return LatencySummary(
        len(values), float(values.mean()), float(p50), float(p90), float(p99), float(values.max())
    )
