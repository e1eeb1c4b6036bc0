"""The training frame: what a user's training function receives, and the holdout split.

:func:`build_frame` turns the joined archive window
(:meth:`~modelstream.archive.reader.ArchiveReader.joined` with ``labelled_only=True``)
into a :class:`TrainingFrame`. **The DataFrame given to a training function has exactly
these columns, in this order**:

* the model's input columns, which are either
  - ``input_0 .. input_{n-1}`` (``inputs="inputs"``, the default): the request's numeric
    inputs flattened, as the scorer receives them in the tensor ``input``; or
  - ``f_<name>`` for every featurizer value, names sorted (``inputs="features"``): the
    model then takes the tensor ``features``, which the scorer fills from the request's
    ``features`` object;
* ``label``: the ground truth; an ``int64`` class when every label of the window is a
  whole number, ``float64`` for numbers, else the label text (string classes).

Rows are in event-time order (oldest first) with a ``RangeIndex``. The estimator must be
fitted on ``frame.drop(columns="label")`` -- all the input columns, in this order --
because the converted model maps tensor column ``i`` to input column ``i``. Rows with a
missing input value are dropped (the scorer could not have scored them either).

:func:`split_holdout` is time-ordered: the last ``fraction`` of the rows (the most recent
event times) is the holdout, so evaluation never peeks at the future of the training rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from modelstream.errors import ConfigurationError
from modelstream.training.config import INPUT_TENSOR, InputKind

LABEL = "label"


@dataclass(frozen=True)
class TrainingFrame:
    """Labelled rows of a window, ready for a training function (see the module doc).

    ``frame`` holds the input columns then ``label``; ``request_ids`` and ``event_time``
    (ms) are aligned with its rows and kept out of it, so a function cannot fit on them.
    """

    frame: pd.DataFrame
    columns: tuple[str, ...]
    request_ids: tuple[str, ...]
    event_time: npt.NDArray[np.int64]
    input_kind: InputKind

    @property
    def rows(self) -> int:
        return len(self.frame)

    @property
    def tensor_name(self) -> str:
        """The ONNX input name of a model fitted on these columns."""
        return INPUT_TENSOR[self.input_kind]

    @property
    def x(self) -> npt.NDArray[np.float32]:
        return self.frame[list(self.columns)].to_numpy(dtype=np.float32)

    @property
    def y(self) -> npt.NDArray[np.generic]:
        return self.frame[LABEL].to_numpy()

    def span(self) -> tuple[int | None, int | None]:
        """First and last event time (ms) of the rows; ``(None, None)`` when empty."""
        if self.rows == 0:
            return None, None
        return int(self.event_time.min()), int(self.event_time.max())

    def take(self, start: int, stop: int) -> TrainingFrame:
        return TrainingFrame(
            self.frame.iloc[start:stop].reset_index(drop=True),
            self.columns,
            self.request_ids[start:stop],
            self.event_time[start:stop],
            self.input_kind,
        )


def _labels(joined: pd.DataFrame) -> pd.Series:
    numeric = pd.to_numeric(joined["label"], errors="coerce")
    if numeric.notna().all():
        values = numeric.to_numpy(dtype=float)
        if np.all(np.mod(values, 1) == 0):
            return pd.Series(values.astype(np.int64), index=joined.index)
        return pd.Series(values, index=joined.index)
    return joined["label_text"].astype(str)


def build_frame(joined: pd.DataFrame, inputs: InputKind = "inputs") -> TrainingFrame:
    """The training frame of a labelled joined window (see the module doc)."""
    if inputs not in INPUT_TENSOR:
        raise ConfigurationError(f"inputs must be 'inputs' or 'features', got {inputs!r}")
    prefix = "input_" if inputs == "inputs" else "f_"
    if joined.empty:
        columns: list[str] = []
    else:
        columns = [c for c in joined.columns if c.startswith(prefix)]
        if inputs == "inputs":
            columns.sort(key=lambda c: int(c.removeprefix(prefix)))
        if not columns:
            raise ConfigurationError(
                f"the archived requests have no {prefix}* columns: train on "
                f"{'features' if inputs == 'inputs' else 'inputs'} instead, or check that "
                "requests carry numeric single-row inputs (or featurizer values)"
            )
    labelled = joined[joined["label_text"].notna()] if not joined.empty else joined
    if columns:
        labelled = labelled.dropna(subset=columns)
    labelled = labelled.sort_values(["event_time", "request_id"], kind="stable")
    labelled = labelled.reset_index(drop=True)
    frame = labelled[columns].astype("float64") if columns else pd.DataFrame(index=labelled.index)
    frame[LABEL] = _labels(labelled) if not labelled.empty else pd.Series(dtype="int64")
    return TrainingFrame(
        frame=frame,
        columns=tuple(columns),
        request_ids=tuple(str(r) for r in labelled["request_id"]) if not labelled.empty else (),
        event_time=_ms(labelled),
        input_kind=inputs,
    )


def _ms(frame: pd.DataFrame) -> npt.NDArray[np.int64]:
    """Event times as integer ms since the epoch."""
    if frame.empty:
        return np.zeros(0, np.int64)
    times = pd.to_datetime(frame["event_time"], utc=True).dt.as_unit("ms")
    return np.asarray(times.astype("int64").to_numpy(), dtype=np.int64)


def split_holdout(frame: TrainingFrame, fraction: float) -> tuple[TrainingFrame, TrainingFrame]:
    """(train, holdout): the holdout is the last ``fraction`` of the rows by event time.

    Both parts keep at least one row; ``ConfigurationError`` when there are fewer than two
    rows or ``fraction`` is not in ``(0, 1)``.
    """
    if not 0 < fraction < 1:
        raise ConfigurationError(f"the holdout fraction must be between 0 and 1, got {fraction}")
    if frame.rows < 2:
        raise ConfigurationError(
            f"only {frame.rows} labelled row(s) in the training window: widen the window "
            "or wait for more labels"
        )
    cut = min(max(1, round(frame.rows * (1 - fraction))), frame.rows - 1)
    return frame.take(0, cut), frame.take(cut, frame.rows)
