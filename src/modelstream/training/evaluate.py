"""Evaluating a candidate against the champion on the time-ordered holdout.

Both models are judged on the same holdout rows with
:func:`modelstream.monitoring.compare.compare` (quality with confidence intervals and a
paired test). The candidate's predictions come from loading its ONNX bytes with the
scorer's own loader and scoring the holdout inputs -- what it would answer in service.
The champion's come, per :attr:`TrainerConfig.champion_scores`, from its **archived
scores** of those requests (what it really answered), or from **rescoring** the holdout
with the champion loaded through :func:`~modelstream.models.formats.load_verified`
(digest and trust policy checked, as a scorer would); ``archive`` falls back to
rescoring when the champion scored none of the holdout.

:meth:`Evaluation.accepts` is the publishing rule: the candidate's primary metric
(accuracy for classifiers, MAE for regressors) may be worse than the champion's by at
most ``margin`` (absolute). Without a champion, a candidate is always accepted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from modelstream.archive.reader import SCORE_FIELDS, score_column
from modelstream.archive.rows import PROBABILITY_OUTPUTS
from modelstream.errors import ConfigurationError
from modelstream.models.loader import LoadedModel
from modelstream.models.refs import ModelRef
from modelstream.monitoring import stats
from modelstream.monitoring.compare import compare
from modelstream.training.frame import TrainingFrame


@dataclass(frozen=True)
class Evaluation:
    """The candidate's (and the champion's) holdout quality; ``metric`` is the primary."""

    metric: str
    higher_is_better: bool
    candidate: float
    champion: float | None
    rows: int
    p_value: float | None = None
    champion_source: str = "none"  # "archive", "rescore" or "none"
    metrics: dict[str, float] = field(default_factory=dict)
    # The candidate's holdout score values (see score_values): its score reference.
    scores: tuple[float, ...] = ()

    def accepts(self, margin: float) -> bool:
        """Whether the candidate is not worse than the champion by more than ``margin``."""
        if self.champion is None:
            return True
        if self.higher_is_better:
            return self.candidate >= self.champion - margin
        return self.candidate <= self.champion + margin

    def explain(self, margin: float) -> str:
        if self.champion is None:
            return f"no champion to compare with; holdout {self.metric} {self.candidate:.4f}"
        verdict = "within" if self.accepts(margin) else "worse than"
        return (
            f"holdout {self.metric} {self.candidate:.4f} against the champion's "
            f"{self.champion:.4f} on {self.rows} rows ({self.champion_source} scores): "
            f"{verdict} the margin {margin}"
        )


def scores_of(model: LoadedModel, tensor: str, x: npt.NDArray[Any]) -> pd.DataFrame:
    """A model's answers for ``x`` as archive score columns (:data:`SCORE_FIELDS`)."""
    started = time.perf_counter()
    outputs = {k: np.asarray(v) for k, v in model.predict({tensor: x}).items()}
    latency = (time.perf_counter() - started) * 1000 / max(1, len(x))
    proba = next((v for k, v in outputs.items() if k.lower() in PROBABILITY_OUTPUTS), None)
    first = next((v for k, v in outputs.items() if k.lower() not in PROBABILITY_OUTPUTS), None)
    if first is None and proba is not None:
        first = np.argmax(proba, axis=1)
    if first is None:
        raise ConfigurationError("the model returned no prediction output to evaluate")
    values = first.reshape(len(x), -1)[:, 0]
    numbers = pd.to_numeric(pd.Series(values), errors="coerce")
    texts = [str(int(v)) if isinstance(v, bool | np.bool_) else _text(v) for v in values]
    return pd.DataFrame(
        {
            "prediction": numbers.to_numpy(dtype=float),
            "prediction_text": texts,
            "probabilities": [list(map(float, r)) for r in proba] if proba is not None else None,
            "error": None,
            "latency_ms": latency,
        }
    )


def score_values(scores: pd.DataFrame) -> tuple[float, ...]:
    """The values the monitor watches for score drift, one per row of ``scores``.

    As :func:`modelstream.monitoring.measures.score_value`: P(class 1) of a binary
    classifier, the top probability of a multi-class one, else the numeric prediction;
    rows without one are left out.
    """
    out: list[float] = []
    probabilities = scores.get("probabilities")
    for i, prediction in enumerate(scores["prediction"].to_numpy(dtype=float)):
        proba = None if probabilities is None else probabilities.iloc[i]
        if isinstance(proba, list | tuple | np.ndarray) and len(proba) >= 2:
            out.append(float(proba[1]) if len(proba) == 2 else float(max(proba)))
        elif np.isfinite(prediction):
            out.append(float(prediction))
    return tuple(out)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.integer):
        return str(int(value))
    if isinstance(value, np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def labels_of(holdout: TrainingFrame) -> tuple[npt.NDArray[np.float64], list[str]]:
    """The holdout's labels as (number or NaN, text), as the archive keeps them."""
    y = holdout.y
    numbers = pd.to_numeric(pd.Series(y), errors="coerce").to_numpy(dtype=float)
    return numbers, [_text(v) for v in y]


def archived_scores(
    joined: pd.DataFrame, ref: ModelRef, ids: tuple[str, ...]
) -> pd.DataFrame | None:
    """``ref``'s archived score columns for ``ids`` (in order), or None when it scored none."""
    columns = [score_column(ref, f) for f in SCORE_FIELDS]
    if joined.empty or not set(columns) <= set(joined.columns):
        return None
    mine = joined.drop_duplicates("request_id").set_index("request_id")[columns]
    mine = mine.reindex(list(ids))
    if mine[score_column(ref, "latency_ms")].isna().all():
        return None
    mine.columns = list(SCORE_FIELDS)
    return mine.reset_index(drop=True)


def evaluate(
    holdout: TrainingFrame,
    candidate: tuple[ModelRef, pd.DataFrame],
    champion: tuple[ModelRef, pd.DataFrame, str] | None,
    *,
    seed: int = 0,
) -> Evaluation:
    """Compare ``candidate`` (ref, scores) with ``champion`` (ref, scores, source)."""
    numbers, texts = labels_of(holdout)
    frame = pd.DataFrame({"request_id": holdout.request_ids, "label": numbers, "label_text": texts})
    new_ref, new_scores = candidate
    if champion is None:
        return replace(_alone(new_scores, numbers, texts), scores=score_values(new_scores))
    old_ref, old_scores, source = champion
    for ref, scores in ((old_ref, old_scores), (new_ref, new_scores)):
        for name in SCORE_FIELDS:
            frame[score_column(ref, name)] = scores[name].to_numpy()
    result = compare(frame, old_ref, new_ref, n_resamples=200, seed=seed)
    metrics = {f"holdout_{m.name}": m.value for m in result.b.metrics}
    metrics |= {f"champion_holdout_{m.name}": m.value for m in result.a.metrics}
    metrics |= {"holdout_rows": float(result.n_paired), "p_value": result.p_value}
    return Evaluation(
        metric=result.b.primary.name,
        higher_is_better=result.b.primary.higher_is_better,
        candidate=result.b.primary.value,
        champion=result.a.primary.value,
        rows=result.n_paired,
        p_value=result.p_value,
        champion_source=source,
        metrics=metrics,
        scores=score_values(new_scores),
    )


def _alone(scores: pd.DataFrame, numbers: npt.NDArray[np.float64], texts: list[str]) -> Evaluation:
    """The candidate's own holdout quality (no champion to pair it with)."""
    predictions = scores["prediction"].to_numpy(dtype=float)
    classes = np.all(np.isnan(numbers) | (np.mod(np.nan_to_num(numbers), 1) == 0))
    if classes:
        value = stats.accuracy(np.asarray(texts), scores["prediction_text"].to_numpy())
        name, higher = "accuracy", True
    else:
        value, name, higher = stats.mae(numbers, predictions), "mae", False
    metrics = {f"holdout_{name}": value, "holdout_rows": float(len(texts))}
    return Evaluation(name, higher, value, None, len(texts), metrics=metrics)
