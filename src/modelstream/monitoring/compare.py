"""Champion/challenger: two model versions on the same labelled requests.

:func:`compare` takes the joined set of
:meth:`~modelstream.archive.reader.ArchiveReader.joined` and two model versions, and
reports each one's quality with a confidence interval, a paired significance test, and a
winner when the test is significant at ``alpha``. Rules:

* **Paired rows** are requests with a label and a successful score (no error, a
  prediction) from *both* models; quality and the test use these rows only.
* **Task**: ``classification`` when every label and both models' predictions are
  integers or strings (classes), else ``regression``; or given explicitly.
* **Classification**: accuracy (Wilson interval) first; log loss and, for two classes,
  ROC AUC (bootstrap intervals) when both models' scores carry probabilities and the
  classes are ``0..k-1``. Test: McNemar on right/wrong pairs.
* **Regression**: MAE first, then RMSE (bootstrap intervals). Test: paired bootstrap on
  the absolute errors.
* **Latency and errors** count every request of the window each model scored, labelled
  or not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from modelstream.archive.reader import score_column
from modelstream.errors import ConfigurationError
from modelstream.models.refs import ModelRef
from modelstream.monitoring import stats

Task = Literal["auto", "classification", "regression"]


@dataclass(frozen=True, slots=True)
class Metric:
    """One quality metric with its confidence interval; ``higher_is_better`` says which way."""

    name: str
    value: float
    low: float
    high: float
    higher_is_better: bool


@dataclass(frozen=True, slots=True)
class ModelQuality:
    """One model version: its metrics on the paired rows, first the primary one."""

    ref: ModelRef
    metrics: tuple[Metric, ...]
    scored: int
    errors: int
    latency: stats.LatencySummary

    @property
    def primary(self) -> Metric:
        return self.metrics[0]


@dataclass(frozen=True, slots=True)
class Comparison:
    """The outcome of :func:`compare`; ``winner`` is ``None`` unless ``p_value < alpha``."""

    task: str
    n_paired: int
    a: ModelQuality
    b: ModelQuality
    test: str
    statistic: float
    p_value: float
    alpha: float
    confidence: float
    winner: ModelRef | None

    def to_json(self) -> dict[str, Any]:
        def quality(q: ModelQuality) -> dict[str, Any]:
            return {
                "model": str(q.ref),
                "scored": q.scored,
                "errors": q.errors,
                "metrics": {
                    m.name: {"value": m.value, "low": m.low, "high": m.high} for m in q.metrics
                },
                "latency_ms": asdict(q.latency),
            }

        return {
            "task": self.task,
            "n_paired": self.n_paired,
            "a": quality(self.a),
            "b": quality(self.b),
            "test": self.test,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "alpha": self.alpha,
            "confidence": self.confidence,
            "winner": None if self.winner is None else str(self.winner),
        }


def _columns(joined: pd.DataFrame, ref: ModelRef) -> dict[str, pd.Series]:
    names = ("prediction", "prediction_text", "probabilities", "error", "latency_ms")
    column = score_column(ref, "latency_ms")
    if column not in joined.columns or joined[column].isna().all():
        raise ConfigurationError(
            f"no scores of {ref} in the archive for this window; check the model version, "
            "the --from/--to window, and that the archiver is running"
        )
    return {n: joined[score_column(ref, n)] for n in names}


def _is_class(values: pd.Series) -> bool:
    numeric = pd.to_numeric(values, errors="coerce")
    return bool(numeric.isna().any() or np.all(np.mod(numeric.to_numpy(float), 1) == 0))


def _correct(label: pd.Series, text: pd.Series, pred: pd.Series, pred_text: pd.Series) -> Any:
    numeric = label.notna() & pred.notna()
    return np.where(numeric, label.to_numpy() == pred.to_numpy(), text == pred_text)


def _proba_matrix(values: pd.Series) -> np.ndarray[Any, Any] | None:
    rows = list(values)
    if any(r is None or (isinstance(r, float) and np.isnan(r)) for r in rows):
        return None
    widths = {len(r) for r in rows}
    if len(widths) != 1 or widths == {0}:
        return None
    return np.array([np.asarray(r, dtype=float) for r in rows])


def _classification(
    label: pd.Series, text: pd.Series, cols: dict[str, pd.Series], *, conf: float, seed: int, b: int
) -> tuple[list[Metric], Any]:
    correct = _correct(label, text, cols["prediction"], cols["prediction_text"]).astype(bool)
    low, high = stats.wilson_interval(int(correct.sum()), len(correct), conf)
    metrics = [Metric("accuracy", float(correct.mean()), low, high, True)]
    proba = _proba_matrix(cols["probabilities"])
    y = label.to_numpy(dtype=float)
    if proba is not None and not np.isnan(y).any() and np.all(np.mod(y, 1) == 0):
        classes = y.astype(np.int64)
        if classes.min() >= 0 and classes.max() < proba.shape[1]:
            value = stats.log_loss(classes, proba)
            lo, hi = stats.bootstrap_interval(
                stats.log_loss, classes, proba, confidence=conf, n_resamples=b, seed=seed
            )
            metrics.append(Metric("log_loss", value, lo, hi, False))
        if proba.shape[1] == 2 and len(set(classes.tolist())) == 2:
            value = stats.roc_auc(classes, proba[:, 1])
            lo, hi = stats.bootstrap_interval(
                stats.roc_auc, classes, proba[:, 1], confidence=conf, n_resamples=b, seed=seed
            )
            metrics.append(Metric("roc_auc", value, lo, hi, True))
    return metrics, correct


def _regression(
    label: pd.Series, cols: dict[str, pd.Series], *, conf: float, seed: int, b: int
) -> tuple[list[Metric], Any]:
    y = label.to_numpy(dtype=float)
    pred = cols["prediction"].to_numpy(dtype=float)
    metrics = []
    for name, fn in (("mae", stats.mae), ("rmse", stats.rmse)):
        lo, hi = stats.bootstrap_interval(fn, y, pred, confidence=conf, n_resamples=b, seed=seed)
        metrics.append(Metric(name, fn(y, pred), lo, hi, False))
    return metrics, np.abs(y - pred)


def compare(
    joined: pd.DataFrame,
    a: ModelRef,
    b: ModelRef,
    *,
    task: Task = "auto",
    alpha: float = 0.05,
    confidence: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> Comparison:
    """Compare ``a`` and ``b`` on ``joined`` (see the module for the rules).

    Raises ``ConfigurationError`` when a model has no scores, or when no labelled request
    was scored successfully by both.
    """
    if a == b:
        raise ConfigurationError(f"compare needs two different model versions, got {a} twice")
    cols_a, cols_b = _columns(joined, a), _columns(joined, b)
    label, text = joined["label"], joined["label_text"]
    ok_a = cols_a["prediction_text"].notna() & cols_a["error"].isna()
    ok_b = cols_b["prediction_text"].notna() & cols_b["error"].isna()
    paired = (text.notna() & ok_a & ok_b).to_numpy()
    n = int(paired.sum())
    if n == 0:
        raise ConfigurationError(
            f"no labelled request was scored by both {a} and {b} in this window; "
            "check that labels arrive on the service's labels topic and widen --from/--to"
        )
    pa_ = {k: v[paired] for k, v in cols_a.items()}
    pb_ = {k: v[paired] for k, v in cols_b.items()}
    lab, txt = label[paired], text[paired]
    if task == "auto":
        classes = all(_is_class(s) for s in (txt, pa_["prediction_text"], pb_["prediction_text"]))
        task = "classification" if classes else "regression"
    if task == "classification":
        metrics_a, right_a = _classification(
            lab, txt, pa_, conf=confidence, seed=seed, b=n_resamples
        )
        metrics_b, right_b = _classification(
            lab, txt, pb_, conf=confidence, seed=seed, b=n_resamples
        )
        # Only metrics both models have are comparable side by side.
        common = {m.name for m in metrics_a} & {m.name for m in metrics_b}
        metrics_a = [m for m in metrics_a if m.name in common]
        metrics_b = [m for m in metrics_b if m.name in common]
        test = stats.mcnemar(right_a, right_b)
    else:
        metrics_a, loss_a = _regression(lab, pa_, conf=confidence, seed=seed, b=n_resamples)
        metrics_b, loss_b = _regression(lab, pb_, conf=confidence, seed=seed, b=n_resamples)
        test = stats.paired_bootstrap(loss_a, loss_b, max(n_resamples, 2000), seed)
    winner = None
    if test.p_value < alpha and test.effect != 0:
        winner = a if test.effect > 0 else b

    def quality(ref: ModelRef, cols: dict[str, pd.Series], metrics: list[Metric]) -> ModelQuality:
        scored = cols["latency_ms"].notna()
        return ModelQuality(
            ref,
            tuple(metrics),
            int(scored.sum()),
            int((scored & cols["error"].notna()).sum()),
            stats.latency_summary(cols["latency_ms"].to_numpy(dtype=float)),
        )

    return Comparison(
        task=task,
        n_paired=n,
        a=quality(a, cols_a, metrics_a),
        b=quality(b, cols_b, metrics_b),
        test=test.test,
        statistic=test.statistic,
        p_value=test.p_value,
        alpha=alpha,
        confidence=confidence,
        winner=winner,
    )
