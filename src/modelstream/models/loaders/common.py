"""Helpers shared by the loaders: one-line load errors and the classifier schema."""

from __future__ import annotations

from modelstream.errors import ModelLoadError
from modelstream.models.schema import ModelSchema, TensorSpec


def load_error(fmt: str, exc: BaseException, hint: str = "") -> ModelLoadError:
    """A ``ModelLoadError`` whose message is one line, whatever the runtime said."""
    detail = " ".join(str(exc).split()) or type(exc).__name__
    if len(detail) > 300:
        detail = detail[:297] + "..."
    suffix = f"; {hint}" if hint else ""
    return ModelLoadError(f"the bytes do not load as a {fmt} model: {detail}{suffix}")


def classifier_schema(features: int, classes: int = 2, input_name: str = "input") -> ModelSchema:
    """The schema of the binary classifiers of ``modelstream.testing.sklearn``:
    ``input`` FP32 ``[-1, features]`` in; ``label`` INT64 ``[-1]`` and ``probabilities``
    FP32 ``[-1, classes]`` out. Models of this schema are interchangeable in a service.
    """
    return ModelSchema(
        inputs=(TensorSpec(input_name, "FP32", (-1, features)),),
        outputs=(
            TensorSpec("label", "INT64", (-1,)),
            TensorSpec("probabilities", "FP32", (-1, classes)),
        ),
    )


def regressor_schema(features: int, input_name: str = "input") -> ModelSchema:
    """``input`` FP32 ``[-1, features]`` in, ``prediction`` FP32 ``[-1]`` out."""
    return ModelSchema(
        inputs=(TensorSpec(input_name, "FP32", (-1, features)),),
        outputs=(TensorSpec("prediction", "FP32", (-1,)),),
    )
