"""Python-format test doubles and baselines, usable by entrypoint in any service.

Publish one with ``--format python --entrypoint modelstream.testing.models:ThresholdModel``
and a JSON config file of its keyword arguments (e.g. ``{"threshold": 0.5}``). The service
must allow python models (``allow_python``).

Every double declares the schema of the ONNX classifiers in
:mod:`modelstream.testing.sklearn` (``input`` FP32 ``[-1, features]`` in; ``label`` INT64
``[-1]`` and ``probabilities`` FP32 ``[-1, 2]`` out), so it can stand beside or replace an
ONNX model in a service. ``features`` defaults to 4, as there.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from modelstream.models.loader import Arrays
from modelstream.models.loaders.common import classifier_schema
from modelstream.models.schema import ModelSchema

Outputs = dict[str, npt.NDArray[Any]]


def config(**kwargs: Any) -> bytes:
    """The model bytes of a python model: its keyword arguments as JSON."""
    return json.dumps(kwargs, sort_keys=True).encode()


def _rows(inputs: Arrays) -> int:
    return int(np.asarray(inputs["input"]).shape[0])


class ConstantModel:
    """Answers ``label = value`` for every row, with that class's probability 1."""

    def __init__(self, value: int = 0, features: int = 4) -> None:
        if value not in (0, 1):
            raise ValueError(f"value must be 0 or 1, got {value!r}")
        self.value = value
        self.schema: ModelSchema = classifier_schema(features)

    def predict(self, inputs: Arrays) -> Outputs:
        n = _rows(inputs)
        proba = np.zeros((n, 2), dtype=np.float32)
        proba[:, self.value] = 1.0
        return {"label": np.full(n, self.value, dtype=np.int64), "probabilities": proba}


class ThresholdModel:
    """A rule baseline: ``label = x[:, column] > threshold``.

    The probability of class 1 is the logistic of the distance to the threshold, so it is
    0.5 on the threshold and moves towards 0 or 1 away from it.
    """

    def __init__(self, threshold: float = 0.0, column: int = 0, features: int = 4) -> None:
        if not 0 <= column < features:
            raise ValueError(f"column {column} is outside 0..{features - 1}")
        self.threshold = float(threshold)
        self.column = column
        self.schema: ModelSchema = classifier_schema(features)

    def predict(self, inputs: Arrays) -> Outputs:
        x = np.asarray(inputs["input"], dtype=np.float32)[:, self.column]
        p1 = (1.0 / (1.0 + np.exp(-(x - self.threshold)))).astype(np.float32)
        proba = np.stack([1.0 - p1, p1], axis=1).astype(np.float32)
        return {"label": (x > self.threshold).astype(np.int64), "probabilities": proba}


class SlowModel:
    """A :class:`ThresholdModel` that sleeps ``delay_ms`` per batch first.

    For deadline and timeout tests; a large ``delay_ms`` makes a "hanging" model. The
    sleep is cut short by :meth:`close`, so a test can end without waiting it out.
    """

    def __init__(self, delay_ms: float = 100.0, threshold: float = 0.0, features: int = 4) -> None:
        self.delay_ms = float(delay_ms)
        self._inner = ThresholdModel(threshold, 0, features)
        self.schema: ModelSchema = self._inner.schema
        self._closed = threading.Event()

    def predict(self, inputs: Arrays) -> Outputs:
        self._closed.wait(self.delay_ms / 1000)
        return self._inner.predict(inputs)

    def close(self) -> None:
        self._closed.set()


class FailingModel:
    """Raises on every batch (after the first ``ok_batches``, to pass a warm-up)."""

    def __init__(
        self, message: str = "model failure (FailingModel)", ok_batches: int = 0, features: int = 4
    ) -> None:
        self.message = message
        self.ok_batches = ok_batches
        self._inner = ConstantModel(0, features)
        self.schema: ModelSchema = self._inner.schema
        self._calls = 0

    def predict(self, inputs: Arrays) -> Outputs:
        self._calls += 1
        if self._calls > self.ok_batches:
            raise RuntimeError(self.message)
        return self._inner.predict(inputs)
