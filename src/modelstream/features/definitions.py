"""Feature definitions: windows, features and feature sets, declared in Python.

Example::

    TRUCKS = FeatureSet(
        "trucks", "3",
        features=[
            Feature("temp_mean_5m", field="temp", agg=Mean(), window=Tumbling(5 * 60_000)),
            Feature("temp_trend_10m", field="temp", agg=Slope(),
                    window=Hopping(10 * 60_000, 60_000)),
            Feature("trip_events", agg=Count(), window=Session(gap_ms=15 * 60_000)),
        ],
        entity_field="truck", out_of_orderness_ms=5_000, allowed_lateness_ms=60_000,
    )

``TRUCKS.ref`` (``"trucks@3"``) is what a model trained on these features carries in
``Lineage.feature_set``. Windows are half-open ``[start, end)`` in event-time ms:

* ``Tumbling(size)``: ``[k*size, (k+1)*size)``.
* ``Hopping(size, hop)``: ``[k*hop, k*hop + size)``; ``size`` must be a multiple of
  ``hop``. Each record falls in ``size / hop`` windows; the engine keeps one pane of
  ``hop`` ms per record and assembles windows from panes.
* ``Session(gap)``: a maximal run of an entity's events in which consecutive event times
  differ by less than ``gap``; it spans ``[first, last + gap)``.

See :mod:`modelstream.features.engine` for time (watermarks, lateness) and for what a
request at event time ``t`` receives.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field

from modelstream.errors import FeatureError
from modelstream.features.aggregates import Aggregate, Count

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


@dataclass(frozen=True, slots=True)
class Tumbling:
    size_ms: int

    @property
    def hop_ms(self) -> int:
        return self.size_ms

    @property
    def label(self) -> str:
        return f"tumbling({self.size_ms})"


@dataclass(frozen=True, slots=True)
class Hopping:
    size_ms: int
    hop_ms: int

    @property
    def label(self) -> str:
        return f"hopping({self.size_ms},{self.hop_ms})"


@dataclass(frozen=True, slots=True)
class Session:
    gap_ms: int

    @property
    def label(self) -> str:
        return f"session({self.gap_ms})"


Window = Tumbling | Hopping | Session


@dataclass(frozen=True, slots=True)
class Feature:
    """One named value per entity: ``agg`` of the event field ``field`` over ``window``.

    ``field`` may be omitted only for :class:`Count` (then every event counts). Events that
    lack the field, or carry ``null``, leave the feature untouched.
    """

    name: str
    field: str | None = dc_field(default=None, kw_only=True)
    agg: Aggregate = dc_field(default_factory=Count, kw_only=True)
    window: Window = dc_field(default_factory=lambda: Tumbling(60_000), kw_only=True)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise FeatureError(
                f"feature name {self.name!r} is invalid: use letters, digits and '_', "
                "starting with a letter or '_'"
            )
        if self.field is None and not isinstance(self.agg, Count):
            raise FeatureError(f"feature {self.name!r}: {self.agg.kind} needs a field=...")
        _check_window(self.name, self.window)


def _check_window(name: str, window: Window) -> None:
    if isinstance(window, Session):
        if window.gap_ms <= 0:
            raise FeatureError(f"feature {name!r}: a session gap must be > 0 ms")
        return
    if window.size_ms <= 0 or window.hop_ms <= 0:
        raise FeatureError(f"feature {name!r}: window size and hop must be > 0 ms")
    if window.size_ms % window.hop_ms:
        raise FeatureError(
            f"feature {name!r}: hopping size {window.size_ms} must be a multiple of "
            f"its hop {window.hop_ms}; choose a hop that divides the size"
        )


@dataclass(frozen=True, slots=True)
class FeatureSet:
    """A named, versioned list of features computed per entity.

    ``entity_field`` names the event field holding the entity key (``None``: the record
    key); ``time_field`` the field holding the event time in ms (``None``: the record
    timestamp). ``out_of_orderness_ms`` and ``allowed_lateness_ms`` set the watermark and
    the lateness (see :mod:`modelstream.features.engine`); ``idle_timeout_ms`` is how long
    (processing time) a partition may see no event before its watermark is advanced.
    """

    name: str
    version: str
    features: Sequence[Feature]
    entity_field: str | None = None
    time_field: str | None = None
    out_of_orderness_ms: int = 0
    allowed_lateness_ms: int = 0
    idle_timeout_ms: int = 60_000

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "version", str(self.version))
        if not self.name or "@" in self.name or not self.version or "@" in self.version:
            raise FeatureError("a feature set needs a name and a version without '@'")
        if not self.features:
            raise FeatureError(f"feature set {self.ref} declares no features")
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise FeatureError(f"feature set {self.ref} declares {dupes} more than once")
        if min(self.out_of_orderness_ms, self.allowed_lateness_ms) < 0:
            raise FeatureError("out_of_orderness_ms and allowed_lateness_ms must be >= 0")
        if self.idle_timeout_ms <= 0:
            raise FeatureError("idle_timeout_ms must be > 0")

    @property
    def ref(self) -> str:
        """``name@version``: what model descriptors carry in ``Lineage.feature_set``."""
        return f"{self.name}@{self.version}"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def windows(self) -> tuple[Window, ...]:
        """The distinct windows, in order of first use."""
        return tuple(dict.fromkeys(f.window for f in self.features))

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.field for f in self.features if f.field is not None))
