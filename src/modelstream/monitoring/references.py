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
  baseline of ``quality_drop``.

A descriptor without them, or that cannot be read, leaves the defaults (the first
window). Nothing here raises: a bad tag is logged and ignored.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import orjson

from modelstream.models.descriptor import ModelDescriptor

log = logging.getLogger(__name__)

REFERENCE_TAG = "monitoring.reference"
BASELINE_METRICS = ("accuracy", "mae")


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
    metrics = {
        name: float(descriptor.lineage.metrics[name])
        for name in BASELINE_METRICS
        if name in descriptor.lineage.metrics
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


def reference_tag(inputs: dict[str, list[float]], scores: list[float] | None = None) -> str:
    """The ``monitoring.reference`` tag value for a trainer to put in a descriptor."""
    obj: dict[str, object] = {"inputs": inputs}
    if scores is not None:
        obj["scores"] = scores
    return orjson.dumps(obj).decode()
