"""The demo fleet's feature set: temperature and vibration trends per truck, in event time.

The fleet's clock is compressed: one *simulated minute* is ``minute_ms`` of event time
(1 s in the full demo, 400 ms in the short one), and every window below is counted in
simulated minutes. Events carry their event time as the record timestamp and the truck
as the record key; nothing here reads a wall clock, so the featurizer (live) and
:func:`modelstream.features.offline.build` (the training history) compute the same
values from the same log.

A model whose input is ``features`` receives the values sorted by feature name, as the
archive and the trainer's frame list them, so the names need no particular order.

``FLEET`` and ``FLEET_FAST`` are what a deployment names
(``"modelstream.demo.features:FLEET"``): a feature set is referred to by import path.
"""

from __future__ import annotations

from modelstream.features.aggregates import Max, Mean, Slope
from modelstream.features.definitions import Feature, FeatureSet, Hopping

SHORT, LONG = 5, 30  # window sizes (short_*, long_*), in simulated minutes


def fleet_features(minute_ms: int, version: str) -> FeatureSet:
    """The feature set with one simulated minute lasting ``minute_ms`` of event time."""
    short = Hopping(SHORT * minute_ms, minute_ms)
    long = Hopping(LONG * minute_ms, minute_ms)
    features = [
        Feature("long_temp_mean", field="temp", agg=Mean(), window=long),
        Feature("long_vib_mean", field="vib", agg=Mean(), window=long),
    ] + [
        Feature(f"short_{field}_{name}", field=field, agg=agg, window=short)
        for field in ("temp", "vib")
        for name, agg in (("max", Max()), ("mean", Mean()), ("slope", Slope()))
    ]
    return FeatureSet(
        "fleet",
        version,
        features,
        out_of_orderness_ms=2 * minute_ms,
        allowed_lateness_ms=3 * minute_ms,
        idle_timeout_ms=max(1_000, 5 * minute_ms),
    )


FLEET = fleet_features(1_000, "1")
FLEET_FAST = fleet_features(400, "1-fast")

FEATURE_SETS = {
    1_000: "modelstream.demo.features:FLEET",
    400: "modelstream.demo.features:FLEET_FAST",
}
BY_MINUTE = {1_000: FLEET, 400: FLEET_FAST}
