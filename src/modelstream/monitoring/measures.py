"""Quality of one model version over labelled observations, and the loss ADWIN watches.

Rules (the same as ``compare``'s, applied to a live window):

* An observation is a **classification** one when the label is a string, or an integral
  number and the model's prediction is integral or a string; else **regression**. A
  window is classification when most of its observations are.
* Classification: ``accuracy`` first (the primary metric); ``log_loss`` when every
  score has probabilities of one width and the labels are the classes ``0..k-1``;
  ``roc_auc`` for two classes when both occur. Regression: ``mae`` (primary), ``rmse``.
* The *loss* of one observation (what ADWIN watches) is 0/1 for a wrong class, the
  absolute error for a number.
* :func:`oriented` turns the primary metric into "higher is better"
  (accuracy, or ``-mae``) for the rendezvous's quality policy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from modelstream.monitoring import stats
from modelstream.monitoring.joiner import ScoreView
from modelstream.wire.labels import LabelValue


def _integral(value: float) -> bool:
    return math.isfinite(value) and float(value).is_integer()


def label_text(value: LabelValue) -> str:
    """A label as a class name: ``1``, ``1.0`` and ``True`` are all ``"1"``."""
    if isinstance(value, int | float) and _integral(float(value)):
        return str(int(value))
    return str(value)


def is_classification(label: LabelValue, view: ScoreView) -> bool:
    if isinstance(label, str):
        return True
    if not _integral(float(label)):
        return False
    return view.prediction is None or _integral(view.prediction)


def loss(label: LabelValue, view: ScoreView) -> float | None:
    """0/1 for a class, the absolute error for a number; ``None`` for a failed score."""
    if not view.ok:
        return None
    if is_classification(label, view):
        return 0.0 if view.text == label_text(label) else 1.0
    if view.prediction is None:
        return None
    return abs(float(label) - view.prediction)


@dataclass(frozen=True, slots=True)
class Quality:
    """Quality of one model over a window: task, metrics (primary first), count."""

    task: str
    metrics: dict[str, float]
    primary: str
    n: int

    @property
    def value(self) -> float:
        return self.metrics[self.primary]


def quality_of(pairs: Sequence[tuple[LabelValue, ScoreView]]) -> Quality | None:
    """Quality over ``(label, score)`` pairs of successful scores; ``None`` with none."""
    pairs = [(label, view) for label, view in pairs if view.ok]
    if not pairs:
        return None
    classes = sum(is_classification(label, view) for label, view in pairs)
    if classes * 2 >= len(pairs):
        return _classification(pairs)
    numeric = [
        (float(label), view.prediction) for label, view in pairs if not isinstance(label, str)
    ]
    y = np.array([lab for lab, pred in numeric if pred is not None], dtype=np.float64)
    p = np.array([pred for _, pred in numeric if pred is not None], dtype=np.float64)
    if len(y) == 0:
        return None
    metrics = {"mae": stats.mae(y, p), "rmse": stats.rmse(y, p)}
    return Quality("regression", metrics, "mae", len(y))


def _classification(pairs: Sequence[tuple[LabelValue, ScoreView]]) -> Quality:
    truth = [label_text(label) for label, _ in pairs]
    predicted = [view.text for _, view in pairs]
    metrics = {"accuracy": stats.accuracy(np.array(truth), np.array(predicted, dtype=object))}
    widths = {len(view.probabilities) if view.probabilities else 0 for _, view in pairs}
    if len(widths) == 1 and (width := widths.pop()) >= 2:
        try:
            y = np.array([int(t) for t in truth], dtype=np.int64)
        except ValueError:
            y = None
        if y is not None and y.min() >= 0 and y.max() < width:
            proba = np.array([view.probabilities for _, view in pairs], dtype=np.float64)
            metrics["log_loss"] = stats.log_loss(y, proba)
            if width == 2 and len(set(y.tolist())) == 2:
                metrics["roc_auc"] = stats.roc_auc(y, proba[:, 1])
    return Quality("classification", metrics, "accuracy", len(pairs))


def oriented(primary: str, value: float) -> float:
    """A primary metric oriented so that higher is better (``-mae`` for regressors)."""
    return value if primary == "accuracy" else -value


def score_value(view: ScoreView) -> float | None:
    """The scalar whose distribution is watched for score drift.

    P(class 1) of a binary classifier, the top probability of a multi-class one, else
    the numeric prediction; ``None`` for a failed or non-numeric score.
    """
    if not view.ok:
        return None
    if view.probabilities:
        proba = view.probabilities
        return float(proba[1]) if len(proba) == 2 else float(max(proba))
    return view.prediction


def agree(a: ScoreView, b: ScoreView) -> bool | None:
    """Whether two models' answers to one request agree; ``None`` if either failed."""
    if not (a.ok and b.ok):
        return None
    if a.text == b.text:
        return True
    if a.prediction is not None and b.prediction is not None:
        return math.isclose(a.prediction, b.prediction, rel_tol=1e-6, abs_tol=1e-9)
    return False
