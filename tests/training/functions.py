"""Training functions the tests name as ``tests.training.functions:NAME``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.neural_network import MLPClassifier

from modelstream.training.warm import continue_fit


def _xy(frame: pd.DataFrame) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    return frame.drop(columns="label").to_numpy(np.float32), frame["label"].to_numpy()


def train_logreg(frame: pd.DataFrame) -> LogisticRegression:
    x, y = _xy(frame)
    return LogisticRegression(max_iter=500).fit(x, y)


def train_noise(frame: pd.DataFrame) -> LogisticRegression:
    """A model fitted on shuffled labels: no better than chance."""
    x, y = _xy(frame)
    return LogisticRegression(max_iter=500).fit(x, np.random.default_rng(1).permutation(y))


# Enough trees that a full fit takes most of a second on the warm-start test's rows, so
# the training time it compares is the fit's, not fixed overheads.
TREES = 300
ADDED_TREES = 30


def train_gbm(frame: pd.DataFrame, parent: Any = None) -> GradientBoostingClassifier:
    """From scratch: TREES trees. From a parent: ADDED_TREES more trees on the new rows."""
    x, y = _xy(frame)
    if parent is not None:
        model, _ = continue_fit(parent, x, y, add_trees=ADDED_TREES)
        return model  # type: ignore[no-any-return]
    return GradientBoostingClassifier(n_estimators=TREES, max_depth=3, random_state=0).fit(x, y)


FINE_TUNE_EPOCHS = 30


def train_mlp(frame: pd.DataFrame, parent: Any = None) -> MLPClassifier:
    """From scratch: a small network to convergence. From a parent: fine-tune its weights
    (and Adam's state) with FINE_TUNE_EPOCHS partial_fit epochs on the new rows."""
    x, y = _xy(frame)
    if parent is not None:
        model, _ = continue_fit(parent, x, y, epochs=FINE_TUNE_EPOCHS)
        return model  # type: ignore[no-any-return]
    return MLPClassifier(hidden_layer_sizes=(16,), max_iter=500, random_state=0).fit(x, y)


def train_sgd(frame: pd.DataFrame, parent: Any = None) -> SGDClassifier:
    """From scratch: SGD logistic regression. From a parent: 5 partial_fit epochs."""
    x, y = _xy(frame)
    if parent is not None:
        model, _ = continue_fit(parent, x, y, epochs=5)
        return model  # type: ignore[no-any-return]
    return SGDClassifier(loss="log_loss", random_state=0).fit(x, y)


def returns_nothing(frame: pd.DataFrame) -> None:
    return None


not_callable = 42
