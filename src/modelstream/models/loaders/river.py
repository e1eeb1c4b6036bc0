"""The ``river`` format: online models of the River library.

River models are pickled by nature, and unpickling runs arbitrary code. So this loader
must only ever see bytes whose **signature verified against a key the service trusts**:
:func:`modelstream.models.formats.load_verified` enforces that before calling
:meth:`RiverLoader.load`, and :meth:`modelstream.models.registry.Registry.publish`
refuses to publish a river model without a signing key (``inspect`` unpickles the
publisher's own file, which the publisher vouches for by signing it). Never call this
loader on bytes read from a stream or a request any other way.

The bytes are either a pickled River model, or (better) the envelope :func:`pack` makes,
which also records the feature names: column ``i`` of the ``input`` tensor becomes
feature ``features[i]`` of the dict River scores. Without an envelope the features are
the column indexes and the schema's feature dimension is ``-1``. Binary classifiers
output ``label`` INT64 ``[-1]`` and ``probabilities`` FP32 ``[-1, 2]``; regressors output
``prediction`` FP32 ``[-1]``.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from modelstream.errors import ModelLoadError
from modelstream.models.descriptor import ModelDescriptor
from modelstream.models.loader import Arrays
from modelstream.models.loaders.common import classifier_schema, load_error, regressor_schema
from modelstream.models.schema import ModelSchema

ENVELOPE = "modelstream-river/1"


def pack(model: Any, features: int | Sequence[str]) -> bytes:
    """Pickle ``model`` with its feature names (``int``: names ``0..n-1``), for publishing."""
    names = [str(i) for i in range(features)] if isinstance(features, int) else list(features)
    return pickle.dumps({"envelope": ENVELOPE, "model": model, "features": names})


class RiverModel:
    """A River model scoring a batch row by row."""

    def __init__(self, model: Any, features: list[str] | None) -> None:
        from river import base

        self._model = model
        self._features = features
        width = -1 if features is None else len(features)
        if isinstance(model, base.Classifier):
            self._classifier = True
            self._schema = classifier_schema(width)
        elif isinstance(model, base.Regressor):
            self._classifier = False
            self._schema = regressor_schema(width)
        else:
            raise ModelLoadError(
                f"a river model must be a river Classifier or Regressor, got {type(model).__name__}"
            )

    @property
    def schema(self) -> ModelSchema:
        return self._schema

    def _rows(self, x: npt.NDArray[Any]) -> list[dict[str, float]]:
        names = self._features or [str(i) for i in range(x.shape[1])]
        return [dict(zip(names, map(float, row), strict=True)) for row in x]

    def predict(self, inputs: Arrays) -> dict[str, npt.NDArray[Any]]:
        rows = self._rows(np.asarray(inputs["input"]))
        if not self._classifier:
            values = [float(self._model.predict_one(r) or 0.0) for r in rows]
            return {"prediction": np.asarray(values, dtype=np.float32)}
        proba = np.zeros((len(rows), 2), dtype=np.float32)
        for i, row in enumerate(rows):
            p = self._model.predict_proba_one(row)
            # River names binary classes True/False or 1/0; both hash and compare alike.
            p1 = float(p.get(1, 0.0))
            p0 = float(p.get(0, 1.0 - p1 if p else 0.5))
            total = p0 + p1 or 1.0
            proba[i] = (p0 / total, p1 / total)
        return {"label": np.argmax(proba, axis=1).astype(np.int64), "probabilities": proba}

    def close(self) -> None:
        self._model = None


def unpickle_trusted(data: bytes) -> RiverModel:
    """Unpickle ``data``: only for bytes whose signature verified (see the module doc)."""
    try:
        obj = pickle.loads(data)  # noqa: S301 - signed by a trusted key, verified before
    except Exception as exc:  # unpickling can raise anything
        raise load_error("river", exc) from None
    if isinstance(obj, dict) and obj.get("envelope") == ENVELOPE:
        return RiverModel(obj.get("model"), [str(f) for f in obj.get("features") or []])
    return RiverModel(obj, None)


class RiverLoader:
    """Loads signed River models; see the module docstring for the trust rule."""

    @property
    def format(self) -> str:
        return "river"

    def inspect(self, data: bytes, *, entrypoint: str | None = None) -> ModelSchema:
        return unpickle_trusted(data).schema

    def load(self, data: bytes, descriptor: ModelDescriptor) -> RiverModel:
        return unpickle_trusted(data)
