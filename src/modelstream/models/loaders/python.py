"""The ``python`` format: a class installed beside the scorer, named ``module:Class``.

For baselines, rules and test doubles. The model bytes are a JSON object passed to the
class as keyword arguments. The instance must have a ``schema`` (a
:class:`~modelstream.models.schema.ModelSchema`) and a ``predict(inputs) -> outputs``
method; ``close()`` is optional. Importing runs code, so the loading pipeline
(:func:`modelstream.models.formats.load_verified`) allows this format only for a service
deployed with ``allow_python``; this module does not check that itself.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import numpy as np
import numpy.typing as npt

from modelstream.errors import ModelLoadError
from modelstream.models.descriptor import ModelDescriptor
from modelstream.models.loader import Arrays
from modelstream.models.loaders.common import load_error
from modelstream.models.schema import ModelSchema


def resolve(entrypoint: str | None) -> Any:
    """The class named by ``module:Class``; ``ModelLoadError`` if it cannot be imported."""
    if not entrypoint or ":" not in entrypoint:
        raise ModelLoadError(
            f"a python model needs an entrypoint of the form module:Class, got {entrypoint!r}"
        )
    module_name, _, attr = entrypoint.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise load_error("python", exc, f"is {module_name} installed beside the scorer?") from None


def config_of(data: bytes) -> dict[str, Any]:
    """The keyword arguments in ``data`` (a JSON object; empty bytes mean none)."""
    if not data.strip():
        return {}
    try:
        config = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise load_error(
            "python", exc, "the bytes must be a JSON object of keyword arguments"
        ) from None
    if not isinstance(config, dict):
        raise ModelLoadError(
            "the bytes of a python model must be a JSON object of keyword arguments"
        )
    return config


class PythonModel:
    """Adapts an instance of the entrypoint class to the LoadedModel protocol."""

    def __init__(self, instance: Any, entrypoint: str) -> None:
        schema = getattr(instance, "schema", None)
        if not isinstance(schema, ModelSchema) or not callable(getattr(instance, "predict", None)):
            raise ModelLoadError(
                f"{entrypoint} must have a 'schema' (ModelSchema) and a 'predict' method"
            )
        self._instance = instance
        self._schema = schema

    @property
    def schema(self) -> ModelSchema:
        return self._schema

    def predict(self, inputs: Arrays) -> dict[str, npt.NDArray[Any]]:
        outputs = self._instance.predict(inputs)
        return {name: np.asarray(value) for name, value in outputs.items()}

    def close(self) -> None:
        close = getattr(self._instance, "close", None)
        if callable(close):
            close()


def instantiate(data: bytes, entrypoint: str | None) -> PythonModel:
    cls = resolve(entrypoint)
    config = config_of(data)
    try:
        instance = cls(**config)
    except Exception as exc:  # the user's constructor may raise anything
        raise load_error("python", exc, f"check the JSON config for {entrypoint}") from None
    return PythonModel(instance, str(entrypoint))


class PythonLoader:
    """Loads ``python``-format models (see the module docstring)."""

    @property
    def format(self) -> str:
        return "python"

    def inspect(self, data: bytes, *, entrypoint: str | None = None) -> ModelSchema:
        model = instantiate(data, entrypoint)
        model.close()
        return model.schema

    def load(self, data: bytes, descriptor: ModelDescriptor) -> PythonModel:
        return instantiate(data, descriptor.entrypoint)
