"""The user's training function, named ``module:function``, and how it is called.

Contract of a training function::

    def train(frame: pandas.DataFrame, *, parent=None) -> sklearn estimator

* ``frame`` is a :class:`~modelstream.training.frame.TrainingFrame`'s DataFrame: the
  input columns (``input_0..`` or ``f_<name>``), then ``label`` -- see
  :mod:`modelstream.training.frame` for the exact columns;
* it returns a **fitted** scikit-learn estimator (or pipeline) fitted on
  ``frame.drop(columns="label")``; the trainer converts it to ONNX;
* ``parent`` is optional: a function that declares it can warm start. The trainer then
  passes the parent version's own fitted estimator (a fresh copy read from the trainer's
  checkpoint store, see :mod:`.checkpoints`), or ``None`` when there is no parent; the
  function may continue it (``partial_fit``, ``warm_start``; :mod:`.warm` has helpers)
  or ignore it. A function without ``parent`` always trains from scratch.

:func:`load_function` imports it and raises ``ConfigurationError`` saying what to fix
when the name is malformed, the module does not import, or the attribute is missing or
not callable.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from modelstream.errors import ConfigurationError

FORM = "module:function (e.g. mypackage.training:train)"


@dataclass(frozen=True)
class TrainingFunction:
    """A loaded training function and whether it accepts ``parent`` (warm start)."""

    spec: str
    fn: Callable[..., Any]
    warm_capable: bool

    def __call__(self, frame: pd.DataFrame, parent: Any = None) -> Any:
        if self.warm_capable:
            return self.fn(frame, parent=parent)
        return self.fn(frame)


def load_function(spec: str) -> TrainingFunction:
    """Import ``spec`` (``module:function``); see the module doc for the errors."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(f"training function {spec!r} must be written {FORM}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"training function {spec!r}: module {module_name!r} does not import ({exc}); "
            "check the name and that it is installed or on PYTHONPATH"
        ) from None
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ConfigurationError(
                f"training function {spec!r}: module {module_name!r} has no {attr!r}; "
                f"write it as {FORM}"
            )
    if not callable(target):
        raise ConfigurationError(
            f"training function {spec!r} is a {type(target).__name__}, not a function"
        )
    return TrainingFunction(spec, target, _takes_parent(target))


def _takes_parent(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return False
    return "parent" in params


def check_fitted(spec: str, model: Any) -> Any:
    """``model`` if it looks like a fitted estimator; else ``ConfigurationError``."""
    if model is None or not hasattr(model, "predict"):
        raise ConfigurationError(
            f"training function {spec} returned {type(model).__name__}, not a fitted "
            "scikit-learn estimator: return the estimator after calling fit"
        )
    return model
