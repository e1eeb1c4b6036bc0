"""The training reference a trainer publishes with a model, for the monitor's drift.

:func:`~.cycle.run_cycle` passes every lineage it publishes through
:func:`with_reference`, which adds the ``monitoring.reference`` tag
(:mod:`modelstream.monitoring.references`) to a cycle's lineage, so the monitor measures
input and score drift against what the model was trained on rather than against the
first window it happens to see:

* ``inputs``: a sample of each input column of the *training* rows, named as the
  monitor names a request's inputs -- ``tensor[i]`` for the archive's ``input_i``
  (tensor names from the archived request, e.g. ``input[0]``), ``features.<name>``
  for ``f_<name>``. When the archived requests do not say how ``input_i`` maps to a
  tensor (no ``inputs`` column, e.g. a Spark source), the inputs are left out;
* ``scores``: a sample of the candidate's own score values on the holdout
  (:func:`~.evaluate.score_values`: P(class 1), or the prediction).
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from modelstream.models.descriptor import Lineage
from modelstream.monitoring.references import REFERENCE_TAG, input_names, reference_tag
from modelstream.training.evaluate import Evaluation
from modelstream.training.frame import TrainingFrame


def monitor_names(joined: pd.DataFrame, train: TrainingFrame) -> list[str] | None:
    """The monitor's names of ``train``'s columns, in order; ``None`` when unknown."""
    if train.input_kind == "features":
        return [f"features.{c.removeprefix('f_')}" for c in train.columns]
    if "inputs" not in joined.columns:
        return None
    known = joined["inputs"].dropna()
    if known.empty:
        return None
    return input_names(str(known.iloc[0]), len(train.columns))


def with_reference(
    lineage: Lineage, joined: pd.DataFrame, train: TrainingFrame, evaluation: Evaluation
) -> Lineage:
    """``lineage`` with the ``monitoring.reference`` tag of this training (see the module)."""
    names = monitor_names(joined, train)
    inputs = (
        {}
        if names is None
        else {
            name: train.frame[column].tolist()
            for name, column in zip(names, train.columns, strict=True)
        }
    )
    scores = list(evaluation.scores) or None
    if not inputs and scores is None:
        return lineage
    tags = {**lineage.tags, REFERENCE_TAG: reference_tag(inputs, scores)}
    return replace(lineage, tags=tags)
