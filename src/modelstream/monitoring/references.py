"""Training references carried by a model's descriptor, for drift and quality baselines.

A trainer that knows what its model was trained on can publish it in the descriptor's
lineage, and the monitor then compares live traffic with *that* instead of with the
first window it sees:

* ``lineage.tags["monitoring.reference"]``: a JSON object
  ``{"inputs": {"x[0]": [0.1, ...], "features.temp_mean_5m": [...]}, "scores": [...]}``
  where ``inputs`` holds samples of the input columns (named as
  :func:`~.state.input_columns` names them) and ``scores`` a sample of the model's own
  score values on its training or holdout data (P(class 1) for a binary classifier).
  Either part may be missing. Samples are truncated to ``max_values``.
* ``lineage.metrics``: ``accuracy`` or ``mae`` measured on a holdout, used as the
  baseline of ``quality_drop``; the trainer's ``holdout_accuracy`` / ``holdout_mae``
  count as well when the plain name is absent.

:func:`reference_tag` builds the tag from whole columns (it samples them, so a
descriptor stays small) and :func:`input_names` names a request's inputs as the monitor
does, from the archive's ``inputs`` JSON.

A descriptor without them, or that cannot be read, leaves the defaults (the first
window). Nothing here raises: a bad tag is logged and ignored.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import orjson

from modelstream.models.descriptor import ModelDescriptor

log = logging.getLogger(__name__)

REFERENCE_TAG = "monitoring.reference"
BASELINE_METRICS = ("accuracy", "mae")
# Values kept per distribution in a tag: MonitorConfig.reference_size's default, so the
# descriptor's sample is as large as the first-window reference it replaces.
REFERENCE_SAMPLE = 500


@dataclass(frozen=True, slots=True)
class DescriptorReference:
    """What a descriptor says about its training reference."""

    inputs: dict[str, list[float]] = field(default_factory=dict)
    scores: list[float] | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def _sample(raw: object, max_values: int) -> list[float] | None:
    if not isinstance(raw, list):
        return None
    values = [float(v) for v in raw[:max_values] if isinstance(v, int | float)]
    values = [v for v in values if math.isfinite(v)]
    return values or None


def reference_of(descriptor: ModelDescriptor, max_values: int = 10_000) -> DescriptorReference:
    """The reference ``descriptor`` carries (see the module); empty when it has none."""
    given = descriptor.lineage.metrics
    metrics = {
        name: float(given[key])
        for name in BASELINE_METRICS
        if (key := name if name in given else f"holdout_{name}") in given
    }
    text = descriptor.lineage.tags.get(REFERENCE_TAG)
    if not text:
        return DescriptorReference(metrics=metrics)
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        log.warning("%s of %s is not JSON; ignored", REFERENCE_TAG, descriptor.ref)
        return DescriptorReference(metrics=metrics)
    if not isinstance(obj, dict):
        return DescriptorReference(metrics=metrics)
    inputs: dict[str, list[float]] = {}
    raw_inputs = obj.get("inputs")
    if isinstance(raw_inputs, dict):
        for name, raw in raw_inputs.items():
            sample = _sample(raw, max_values)
            if sample is not None:
                inputs[str(name)] = sample
    return DescriptorReference(inputs, _sample(obj.get("scores"), max_values), metrics)


def sample(values: Iterable[float], size: int = REFERENCE_SAMPLE) -> list[float]:
    """At most ``size`` finite values of ``values``, evenly spaced over their order.

    Deterministic (the same column gives the same tag); rounded to 6 significant
    digits, which PSI and KS cannot tell apart and which halves the JSON.
    """
    finite = [float(v) for v in values if math.isfinite(float(v))]
    if len(finite) > size:
        step = len(finite) / size
        finite = [finite[int(i * step)] for i in range(size)]
    return [float(f"{v:.6g}") for v in finite]


def reference_tag(
    inputs: Mapping[str, Iterable[float]],
    scores: Iterable[float] | None = None,
    *,
    size: int = REFERENCE_SAMPLE,
) -> str:
    """The ``monitoring.reference`` tag value for a trainer to put in a descriptor.

    ``inputs`` maps the monitor's feature names (see :func:`input_names`) to training
    values, ``scores`` holds the model's own score values on its holdout (P(class 1) of
    a binary classifier, else the prediction); each is sampled to ``size`` values.
    """
    obj: dict[str, object] = {"inputs": {name: sample(v, size) for name, v in inputs.items()}}
    if scores is not None:
        obj["scores"] = sample(scores, size)
    return orjson.dumps(obj).decode()


def input_names(tensors_json: str | None, width: int) -> list[str] | None:
    """The monitor's names of a request's flattened numeric inputs, in order.

    ``tensors_json`` is the archive's ``inputs`` column (the request's tensors as JSON);
    numeric tensors are named ``tensor[i]`` as :func:`~.state.input_columns` names them.
    ``None`` when the JSON is missing or unreadable, or the numeric tensors do not
    flatten to ``width`` values (the archive's ``input_0..input_{width-1}``).
    """
    if not tensors_json:
        return None
    try:
        tensors = orjson.loads(tensors_json)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(tensors, list):
        return None
    names: list[str] = []
    for tensor in tensors:
        if not isinstance(tensor, dict) or tensor.get("datatype") == "BYTES":
            continue
        data = tensor.get("data")
        count = len(data) if isinstance(data, list) else 0
        names.extend(f"{tensor.get('name')}[{i}]" for i in range(count))
    return names if len(names) == width else None
