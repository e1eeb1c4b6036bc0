"""Small real models for tests, benchmarks and the demo: scikit-learn trained here,
converted to ONNX with skl2onnx (:func:`modelstream.training.convert.to_onnx`,
re-exported here). Deterministic for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from modelstream.training.convert import to_onnx

Kind = Literal["logreg", "gbm", "tree", "linear"]


@dataclass(frozen=True)
class Dataset:
    """A synthetic binary classification (or regression) problem."""

    x: npt.NDArray[np.float32]
    y: npt.NDArray[Any]


def make_dataset(
    rows: int = 2000, features: int = 4, seed: int = 0, *, regression: bool = False
) -> Dataset:
    """``rows`` samples of ``features`` float32 columns with a learnable target."""
    from sklearn.datasets import make_classification, make_regression

    if regression:
        x, y = make_regression(n_samples=rows, n_features=features, noise=0.1, random_state=seed)
        return Dataset(x.astype(np.float32), y.astype(np.float32))
    x, y = make_classification(
        n_samples=rows,
        n_features=features,
        n_informative=max(2, features // 2),
        n_redundant=0,
        random_state=seed,
    )
    return Dataset(x.astype(np.float32), y.astype(np.int64))


def fit(kind: Kind, data: Dataset, seed: int = 0, trees: int = 100) -> Any:
    """A fitted scikit-learn estimator of ``kind`` on ``data``."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    estimators: dict[str, Any] = {
        "logreg": LogisticRegression(max_iter=500, random_state=seed),
        "gbm": GradientBoostingClassifier(n_estimators=trees, max_depth=3, random_state=seed),
        "tree": DecisionTreeClassifier(max_depth=5, random_state=seed),
        "linear": LinearRegression(),
    }
    model = estimators[kind]
    model.fit(data.x, data.y)
    return model


def onnx_classifier(
    kind: Kind = "logreg", features: int = 4, seed: int = 0, rows: int = 2000, trees: int = 100
) -> tuple[bytes, Dataset]:
    """Train a ``kind`` classifier on a synthetic dataset and return (ONNX bytes, data)."""
    data = make_dataset(rows, features, seed)
    return to_onnx(fit(kind, data, seed, trees), features), data


__all__ = ["Dataset", "fit", "make_dataset", "onnx_classifier", "to_onnx"]
