"""Distribution drift between a reference sample and a current one: PSI and two-sample KS.

Pure functions on plain arrays. Conventions:

* **PSI** (population stability index) bins both samples by the reference's quantiles
  (``bins`` equal-mass bins, duplicate edges merged, the outer edges open), floors each
  bin's share at ``eps`` so an empty bin does not make it infinite, and sums
  ``(current - reference) * ln(current / reference)``. Rule of thumb: below 0.1 stable,
  0.1-0.2 a moderate shift, above 0.2 a major one.
* **KS**: :func:`scipy.stats.ks_2samp` (two-sided): the largest gap between the two
  empirical CDFs, and its p-value.
* :func:`measure` combines both: a sample *drifted* when PSI reaches ``psi_threshold``,
  or when KS is significant at ``ks_alpha`` *and* its statistic reaches
  ``ks_min_statistic`` (with thousands of values a negligible gap is significant; the
  floor on the statistic keeps alerts to shifts that matter).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.ArrayLike


def _finite(values: Array) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def psi_from_shares(reference: Array, current: Array, eps: float = 1e-4) -> float:
    """PSI of two vectors of bin shares (each summing to 1), shares floored at ``eps``."""
    ref = np.maximum(np.asarray(reference, dtype=np.float64), eps)
    cur = np.maximum(np.asarray(current, dtype=np.float64), eps)
    if ref.shape != cur.shape or ref.ndim != 1:
        raise ValueError("psi_from_shares needs two 1-D vectors of the same length")
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def quantile_edges(reference: Array, bins: int = 10) -> npt.NDArray[np.float64]:
    """Inner bin edges at the reference's quantiles (duplicates merged)."""
    ref = _finite(reference)
    if len(ref) == 0:
        raise ValueError("quantile_edges needs a non-empty reference")
    inner = np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1])
    edges: npt.NDArray[np.float64] = np.unique(inner)
    return edges


def bin_shares(values: Array, edges: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Share of ``values`` in each bin ``(-inf, e0], (e0, e1], ..., (ek, inf)``."""
    array = _finite(values)
    if len(array) == 0:
        raise ValueError("bin_shares needs at least one finite value")
    index = np.searchsorted(edges, array, side="left")
    counts = np.bincount(index, minlength=len(edges) + 1).astype(np.float64)
    shares: npt.NDArray[np.float64] = counts / counts.sum()
    return shares


def psi(reference: Array, current: Array, bins: int = 10, eps: float = 1e-4) -> float:
    """PSI of ``current`` against ``reference`` (see the module for the binning)."""
    edges = quantile_edges(reference, bins)
    return psi_from_shares(bin_shares(reference, edges), bin_shares(current, edges), eps)


@dataclass(frozen=True, slots=True)
class KsResult:
    """Two-sample Kolmogorov-Smirnov: the largest CDF gap and its two-sided p-value."""

    statistic: float
    p_value: float


def ks_test(reference: Array, current: Array) -> KsResult:
    """Two-sided two-sample KS test of ``current`` against ``reference``."""
    ref, cur = _finite(reference), _finite(current)
    if len(ref) == 0 or len(cur) == 0:
        raise ValueError("ks_test needs two non-empty samples")
    from scipy import stats as sps  # lazily: importing it takes 0.6 s

    with warnings.catch_warnings():
        # scipy tries the exact p-value first and, when that does not converge, falls back
        # to the asymptotic one with a RuntimeWarning; the fallback is the intended answer.
        warnings.filterwarnings("ignore", "ks_2samp: Exact calculation", RuntimeWarning)
        result: Any = sps.ks_2samp(ref, cur)
    return KsResult(float(result.statistic), float(result.pvalue))


@dataclass(frozen=True, slots=True)
class DriftMeasure:
    """PSI and KS of one distribution against one reference, and the verdict."""

    psi: float
    ks_statistic: float
    ks_p_value: float
    n_reference: int
    n_current: int
    drifted: bool

    def to_json(self) -> dict[str, Any]:
        def num(value: float) -> float | None:
            return None if math.isnan(value) else value

        return {
            "psi": num(self.psi),
            "ks_statistic": num(self.ks_statistic),
            "ks_p_value": num(self.ks_p_value),
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "drifted": self.drifted,
        }


def measure(
    reference: Array,
    current: Array,
    *,
    bins: int = 10,
    psi_threshold: float = 0.2,
    ks_alpha: float = 0.001,
    ks_min_statistic: float = 0.1,
) -> DriftMeasure:
    """PSI and KS of ``current`` against ``reference`` with the verdict of the module doc."""
    ref, cur = _finite(reference), _finite(current)
    value = psi(ref, cur, bins)
    ks = ks_test(ref, cur)
    drifted = value >= psi_threshold or (ks.p_value < ks_alpha and ks.statistic >= ks_min_statistic)
    return DriftMeasure(value, ks.statistic, ks.p_value, len(ref), len(cur), drifted)
