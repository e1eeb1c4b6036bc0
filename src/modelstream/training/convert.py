"""Fitted scikit-learn estimators to ONNX bytes the scorers run (through skl2onnx).

Contract of :func:`to_onnx`:

* the model takes one input, ``input_name`` (default ``input``), FP32 ``[N, features]``:
  the columns in the order the estimator was fitted on;
* classifiers output ``label`` (INT64 ``[N]``, or STRING for string classes) and
  ``probabilities`` (FP32 ``[N, C]``) as plain tensors: skl2onnx's ZipMap is turned off,
  so the outputs match :func:`modelstream.models.loaders.common.classifier_schema`;
* regressors output ``variable`` FP32 ``[N, 1]`` (skl2onnx's name), which the archive
  reads as the prediction like any other first non-probability output;
* an estimator skl2onnx cannot convert raises ``ConfigurationError`` naming it, so a
  trainer reports it instead of crashing.

Both the trainer and :mod:`modelstream.testing.sklearn` (test models) use this module,
so a model trained by the trainer and a test double are converted the same way.
"""

from __future__ import annotations

from typing import Any

from modelstream.errors import ConfigurationError

TARGET_OPSET = 17


def is_classifier(model: Any) -> bool:
    """Whether ``model`` answers with classes (it has ``predict_proba`` and ``classes_``)."""
    return hasattr(model, "predict_proba") and getattr(model, "classes_", None) is not None


def feature_count(model: Any) -> int:
    """The number of input columns ``model`` was fitted on; ``ConfigurationError`` if unfitted."""
    count = getattr(model, "n_features_in_", None)
    if count is None:
        raise ConfigurationError(
            f"{type(model).__name__} is not fitted (it has no n_features_in_): the training "
            "function must return a fitted scikit-learn estimator"
        )
    return int(count)


def to_onnx(model: Any, features: int | None = None, input_name: str = "input") -> bytes:
    """ONNX bytes for a fitted scikit-learn ``model`` taking ``[N, features]`` float32.

    ``features`` defaults to the estimator's ``n_features_in_``. See the module doc for
    the outputs.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    width = feature_count(model) if features is None else features
    options = {id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None
    try:
        onx = convert_sklearn(
            model,
            initial_types=[(input_name, FloatTensorType([None, width]))],
            options=options,
            target_opset=TARGET_OPSET,
        )
    except Exception as exc:  # skl2onnx raises many kinds for unsupported models
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ConfigurationError(
            f"cannot convert {type(model).__name__} to ONNX ({detail}); return an estimator "
            "skl2onnx supports (see its list of supported scikit-learn models)"
        ) from None
    return bytes(onx.SerializeToString())
