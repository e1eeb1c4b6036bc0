"""How the demo's models learn: one function for the first models and the trainer role.

:func:`train` is a training function in the trainer's contract
(:mod:`modelstream.training.function`): it takes the training frame (``f_<feature>``
columns, names sorted, then ``label``) and returns a fitted scikit-learn estimator. The
demo's first models are fitted by :func:`fit` on the offline history; the trainer role
calls :func:`train` (``"modelstream.demo.training:train"``) on the archive.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

Kind = Literal["gbm", "logreg", "tree"]
FUNCTION = "modelstream.demo.training:train"


def fit(kind: Kind, x: npt.NDArray[np.float64], y: npt.NDArray[np.int64], seed: int = 7) -> Any:
    """A fitted classifier of ``kind``: every step converts to ONNX."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    estimators: dict[str, Any] = {
        "gbm": GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=seed),
        # Slopes are per second and temperatures in degrees: scale before a linear model.
        "logreg": make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
        "tree": DecisionTreeClassifier(max_depth=4, random_state=seed),
    }
    model = estimators[kind]
    model.fit(x, y)
    return model


def train(frame: pd.DataFrame) -> Any:
    """The trainer's function: a gradient-boosted classifier on every feature column."""
    x = frame.drop(columns="label").to_numpy(dtype=np.float64)
    y = frame["label"].to_numpy(dtype=np.int64)
    return fit("gbm", x, y)
