"""The ``skops`` format: scikit-learn estimators saved with ``skops.io``.

skops never unpickles: it rebuilds objects of known types only. It trusts a default set
(scikit-learn estimators, numpy, builtins); this loader adds an explicit list of further
types (:data:`TRUSTED_TYPES`, plus ``Settings.skops_trusted_types``) and refuses any file
holding a type outside both, naming it, before loading anything.

Classifiers output ``label`` (INT64 ``[-1]``, or BYTES for string classes) and
``probabilities`` FP32 ``[-1, classes]``; regressors output ``prediction`` FP32 ``[-1]``.
The input is ``input`` FP32 ``[-1, n_features_in_]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from modelstream.errors import ModelLoadError
from modelstream.models.descriptor import ModelDescriptor
from modelstream.models.loader import Arrays
from modelstream.models.loaders.common import classifier_schema, load_error, regressor_schema
from modelstream.models.schema import ModelSchema, TensorSpec

# Types scikit-learn models are made of that skops does not trust by default.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.tree._tree.Tree",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn.ensemble._gb.GradientBoostingClassifier",
    "sklearn.ensemble._gb.GradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
)


class SkopsModel:
    """A scikit-learn estimator behind the LoadedModel protocol."""

    def __init__(self, estimator: Any) -> None:
        features = int(getattr(estimator, "n_features_in_", -1))
        self._estimator = estimator
        classes = getattr(estimator, "classes_", None)
        self._classifier = classes is not None and hasattr(estimator, "predict_proba")
        if classes is not None and self._classifier:
            schema = classifier_schema(features, len(classes))
            if np.asarray(classes).dtype.kind not in "iub":
                label = TensorSpec("label", "BYTES", (-1,))
                schema = ModelSchema(schema.inputs, (label, schema.outputs[1]))
            self._schema = schema
        elif hasattr(estimator, "predict"):
            self._schema = regressor_schema(features)
        else:
            raise ModelLoadError(f"{type(estimator).__name__} has no predict method")

    @property
    def schema(self) -> ModelSchema:
        return self._schema

    def predict(self, inputs: Arrays) -> dict[str, npt.NDArray[Any]]:
        x = np.asarray(inputs["input"])
        if not self._classifier:
            return {"prediction": np.asarray(self._estimator.predict(x), dtype=np.float32)}
        proba = np.asarray(self._estimator.predict_proba(x), dtype=np.float32)
        labels = np.asarray(self._estimator.classes_)[np.argmax(proba, axis=1)]
        label = labels.astype(np.int64) if labels.dtype.kind in "iub" else labels.astype(object)
        return {"label": label, "probabilities": proba}

    def close(self) -> None:
        self._estimator = None


class SkopsLoader:
    """Loads skops files whose every type is trusted."""

    def __init__(self, extra_trusted: Sequence[str] = ()) -> None:
        self._trusted = [*TRUSTED_TYPES, *extra_trusted]

    @property
    def format(self) -> str:
        return "skops"

    def _load(self, data: bytes) -> SkopsModel:
        import skops.io as sio

        try:
            untrusted = sio.get_untrusted_types(data=data)
        except Exception as exc:  # a corrupt zip or schema raises many kinds of errors
            raise load_error("skops", exc) from None
        unknown = sorted(set(untrusted) - set(self._trusted))
        if unknown:
            raise ModelLoadError(
                f"the skops file holds types that are not trusted: {', '.join(unknown)}; "
                "if you trust them, add them to MODELSTREAM_SKOPS_TRUSTED_TYPES"
            )
        try:
            estimator = sio.loads(data, trusted=list(untrusted))
        except Exception as exc:
            raise load_error("skops", exc) from None
        return SkopsModel(estimator)

    def inspect(self, data: bytes, *, entrypoint: str | None = None) -> ModelSchema:
        return self._load(data).schema

    def load(self, data: bytes, descriptor: ModelDescriptor) -> SkopsModel:
        return self._load(data)
