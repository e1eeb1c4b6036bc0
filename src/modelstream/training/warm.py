"""Continuing a fitted model on new rows: helpers for warm-starting training functions.

A training function that declares ``parent`` (see :mod:`.function`) receives the parent
version's estimator and may call :func:`continue_fit` to add to it instead of starting
over. What "continue" means depends on the estimator, and what it costs is reported as
a :class:`Work` so a caller (or a test) can see how much was done:

* **incremental estimators** (``partial_fit``: ``SGDClassifier``, ``SGDRegressor``,
  ``MLPClassifier`` ...): ``epochs`` passes of ``partial_fit`` over the new rows;
  ``Work.rows`` counts every row seen;
* **boosting with ``warm_start``** (``GradientBoostingClassifier`` ...):
  ``n_estimators`` grows by ``add_trees`` and ``fit`` fits only the new trees on the new
  rows; ``Work.trees`` counts them;
* **histogram boosting** (``HistGradientBoostingClassifier``/``Regressor``): the same
  with ``max_iter`` grown by ``add_trees`` iterations (``Work.trees`` counts the trees:
  one per iteration, one per class and iteration for more than two classes). The new
  trees use the parent's feature bins, and with early stopping on (the default above
  10 000 rows) fewer may be added;
* **River models** (``learn_one``): one pass of ``learn_one`` over the new rows.

The parent is changed in place and returned: the trainer hands a fresh copy from its
checkpoint store, so nothing shared is mutated. Classes must be the parent's: a row with
a class the parent never saw raises ``ConfigurationError`` (retrain from scratch then).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelstream.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class Work:
    """How much training a fit did: rows processed and trees fitted."""

    rows: int = 0
    trees: int = 0


def _check_classes(parent: Any, y: npt.NDArray[Any]) -> None:
    classes = getattr(parent, "classes_", None)
    if classes is not None:
        unseen = set(np.unique(y).tolist()) - set(np.asarray(classes).tolist())
        if unseen:
            raise ConfigurationError(
                f"the new rows have classes {sorted(unseen)} the parent never saw; "
                "train from scratch (without warm start) to add classes"
            )


def continue_fit(
    parent: Any,
    x: npt.NDArray[Any],
    y: npt.NDArray[Any],
    *,
    epochs: int = 1,
    add_trees: int = 10,
    feature_names: list[str] | None = None,
) -> tuple[Any, Work]:
    """Continue ``parent`` on ``(x, y)``; return it and the work done (see the module doc)."""
    if len(x) != len(y) or len(x) == 0:
        raise ConfigurationError("continue_fit needs the same, non-zero number of rows and labels")
    if hasattr(parent, "learn_one"):
        names = feature_names or [str(i) for i in range(x.shape[1])]
        for row, target in zip(x, y, strict=True):
            parent.learn_one(dict(zip(names, map(float, row), strict=True)), target.item())
        return parent, Work(rows=len(x))
    _check_classes(parent, y)
    if hasattr(parent, "partial_fit"):
        for _ in range(epochs):
            parent.partial_fit(x, y)
        return parent, Work(rows=len(x) * epochs)
    if getattr(parent, "warm_start", None) is not None and hasattr(parent, "_predictors"):
        before = _hist_trees(parent)
        parent.set_params(warm_start=True, max_iter=parent.n_iter_ + add_trees)
        parent.fit(x, y)
        return parent, Work(rows=len(x), trees=_hist_trees(parent) - before)
    if getattr(parent, "warm_start", None) is not None and hasattr(parent, "n_estimators"):
        before = len(getattr(parent, "estimators_", ()))
        parent.set_params(warm_start=True, n_estimators=before + add_trees)
        parent.fit(x, y)
        return parent, Work(rows=len(x), trees=len(parent.estimators_) - before)
    if hasattr(parent, "coefs_"):
        raise ConfigurationError(
            f"{type(parent).__name__} with solver={parent.solver!r} cannot be continued: "
            "partial_fit needs solver='adam' or 'sgd'; fit the parent with one of those"
        )
    raise ConfigurationError(
        f"{type(parent).__name__} cannot be continued: warm start needs partial_fit, a "
        "warm_start parameter (boosting, forests) or a River model; train it from scratch "
        "(a function that ignores `parent`)"
    )


def _hist_trees(model: Any) -> int:
    """Trees of a fitted histogram gradient boosting model (a list per iteration)."""
    return sum(len(trees) for trees in model._predictors)  # no public count of trees
