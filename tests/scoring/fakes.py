"""Small fakes for the scorer's unit tests (integration tests use the real parts)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from modelstream.models.loader import Arrays
from modelstream.models.schema import ModelSchema, TensorSpec

SCHEMA = ModelSchema(
    inputs=(TensorSpec("input", "FP32", (-1, 3)),),
    outputs=(TensorSpec("y", "FP32", (-1,)),),
)


class SumModel:
    """``y`` = the row sums plus ``bias``; counts its calls and batch sizes."""

    def __init__(self, bias: float = 0.0, schema: ModelSchema = SCHEMA) -> None:
        self.bias = bias
        self._schema = schema
        self.batches: list[int] = []
        self.closed = False

    @property
    def schema(self) -> ModelSchema:
        return self._schema

    def predict(self, inputs: Arrays) -> dict[str, npt.NDArray[Any]]:
        x = inputs["input"]
        self.batches.append(int(x.shape[0]))
        return {"y": x.sum(axis=1).astype(np.float32) + np.float32(self.bias)}

    def close(self) -> None:
        self.closed = True


class RaisingModel(SumModel):
    def predict(self, inputs: Arrays) -> dict[str, npt.NDArray[Any]]:
        raise ValueError("boom")


class HangingModel(SumModel):
    """Blocks in ``predict`` until ``release`` is set (bounded, so threads always end)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def predict(self, inputs: Arrays) -> dict[str, npt.NDArray[Any]]:
        self.release.wait(5.0)
        return super().predict(inputs)
