"""The training function the example's trainer process calls (``training:train``).

Contract (see :mod:`modelstream.training.function`): a pandas DataFrame of the input
columns and ``label`` in, a fitted scikit-learn estimator out; the trainer converts it
to ONNX, evaluates it against the champion on a holdout and (here: not) publishes it.
"""

from __future__ import annotations

from typing import Any

from sklearn.linear_model import LogisticRegression


def train(frame: Any) -> LogisticRegression:
    """A logistic regression on every input column."""
    x = frame.drop(columns="label").to_numpy(dtype="float32")
    return LogisticRegression(max_iter=500).fit(x, frame["label"].to_numpy())
