"""A simulated fleet of trucks: sensor readings, failures with precursors, labels later.

Each truck emits one reading (engine temperature ``temp``, vibration ``vib``) per
simulated minute. A healthy truck starts to degrade with probability ``p_degrade`` a
minute; a degrading truck fails exactly ``episode`` minutes later and is repaired at once.
While it degrades, the *precursor* rises minute by minute: the engine temperature at
first, the vibration after :meth:`Fleet.drift` (the world changes, the old model's cue
goes silent).

Truth: a request about truck ``e`` at event time ``t`` is labelled 1 when ``e`` fails in
``(t, t + horizon]``, else 0. With ``horizon == episode`` that is "the truck is degrading
now". A label is known only later: a 1 when the failure happens, a 0 once the horizon has
passed without one (:meth:`Fleet.due_labels`).

Delivery: :meth:`Fleet.deliver` holds some readings back on purpose, so they reach the
stream out of event-time order (a minute or two behind: within the featurizer's
tolerance) or late (ten minutes behind: past the allowed lateness, onto the late side
stream). Everything is seeded, so a run is reproducible. Not thread-safe: one thread
drives a fleet.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

TEMPERATURE, VIBRATION = "temperature", "vibration"


@dataclass(frozen=True, slots=True)
class Reading:
    """One sensor reading of one truck at an event time (ms)."""

    entity: str
    event_time: int
    temp: float
    vib: float

    def fields(self) -> dict[str, float]:
        return {"temp": round(self.temp, 3), "vib": round(self.vib, 4)}


@dataclass(frozen=True, slots=True)
class TruthLabel:
    """The truth about one request, once known."""

    request_id: str
    entity: str
    event_time: int
    value: int
    labelled_at: int


@dataclass
class _Truck:
    name: str
    base_temp: float
    base_vib: float
    degrading: int = -1  # minutes into the current episode; -1: healthy


class Fleet:
    """``trucks`` simulated trucks on a clock of ``minute_ms`` event-time ms a minute."""

    def __init__(
        self,
        trucks: int = 50,
        *,
        minute_ms: int = 1_000,
        seed: int = 7,
        p_degrade: float = 0.04,
        episode: int = 10,
        out_of_order_share: float = 0.04,
        late_share: float = 0.02,
    ) -> None:
        self.minute_ms = minute_ms
        self.episode = episode
        self.horizon_ms = episode * minute_ms
        self.p_degrade = p_degrade
        self.precursor = TEMPERATURE
        self._rng = np.random.default_rng(seed)
        self._trucks = [
            _Truck(
                f"truck-{i:02d}",
                float(self._rng.uniform(66, 74)),
                float(self._rng.uniform(0.8, 1.2)),
            )
            for i in range(1, trucks + 1)
        ]
        self._ooo_share = out_of_order_share
        self._late_share = late_share
        self._held: list[tuple[int, int, Reading]] = []  # (release ms, seq, reading)
        self._seq = 0
        self._failures: dict[str, list[int]] = defaultdict(list)
        self._pending: dict[str, list[tuple[str, int]]] = defaultdict(list)
        self._due: list[TruthLabel] = []
        self.failures = 0
        self.held_back = 0

    @property
    def entities(self) -> list[str]:
        return [t.name for t in self._trucks]

    def drift(self) -> None:
        """From now on failures are preceded by rising vibration, not temperature."""
        self.precursor = VIBRATION

    # -- the world ----------------------------------------------------------------------

    def tick(self, t: int) -> list[Reading]:
        """Advance every truck one minute to event time ``t``; their readings at ``t``."""
        readings = []
        for truck in self._trucks:
            if truck.degrading >= 0:
                truck.degrading += 1
                if truck.degrading >= self.episode:
                    self._fail(truck.name, t)
                    truck.degrading = -1
            elif self._rng.random() < self.p_degrade:
                truck.degrading = 0
            readings.append(self._read(truck, t))
        return readings

    def _read(self, truck: _Truck, t: int) -> Reading:
        rise = max(truck.degrading, 0)
        temp = truck.base_temp + self._rng.normal(0, 0.8)
        vib = truck.base_vib + self._rng.normal(0, 0.05)
        if rise:
            if self.precursor == TEMPERATURE:
                temp += 1.5 * rise
            else:
                vib += 0.12 * rise
        return Reading(truck.name, t, temp, vib)

    def _fail(self, entity: str, t: int) -> None:
        self.failures += 1
        self._failures[entity].append(t)
        still = []
        for request_id, at in self._pending.pop(entity, []):
            if at < t <= at + self.horizon_ms:
                self._due.append(TruthLabel(request_id, entity, at, 1, t))
            else:
                still.append((request_id, at))
        if still:
            self._pending[entity] = still

    def label_of(self, entity: str, t: int) -> int:
        """The truth for ``entity`` at ``t`` (for history: every failure is known)."""
        return int(any(t < f <= t + self.horizon_ms for f in self._failures.get(entity, ())))

    # -- requests and their labels ------------------------------------------------------

    def requested(self, request_id: str, entity: str, t: int) -> None:
        """Remember a request about ``entity`` at ``t`` so its label comes when known."""
        self._pending[entity].append((request_id, t))

    @property
    def pending_labels(self) -> int:
        """Requests remembered whose label is not known yet."""
        return sum(len(p) for p in self._pending.values())

    def due_labels(self, now: int) -> list[TruthLabel]:
        """Labels that became known by ``now`` (failures first, then quiet horizons)."""
        out, self._due = self._due, []
        for entity, pending in list(self._pending.items()):
            keep = []
            for request_id, at in pending:
                if at + self.horizon_ms < now:
                    out.append(TruthLabel(request_id, entity, at, 0, at + self.horizon_ms))
                else:
                    keep.append((request_id, at))
            if keep:
                self._pending[entity] = keep
            else:
                del self._pending[entity]
        return out

    # -- delivery -----------------------------------------------------------------------

    def deliver(self, readings: list[Reading], now: int) -> list[Reading]:
        """What reaches the stream at ``now``: most readings at once, a few held back
        (out of order: 1-2 minutes; late: 10 minutes), and those whose time has come."""
        out = []
        for reading in readings:
            draw = self._rng.random()
            if draw < self._late_share:
                self._hold(reading, now + 10 * self.minute_ms)
            elif draw < self._late_share + self._ooo_share:
                self._hold(reading, now + int(self._rng.integers(1, 3)) * self.minute_ms)
            else:
                out.append(reading)
        while self._held and self._held[0][0] <= now:
            out.append(heapq.heappop(self._held)[2])
        return out

    def _hold(self, reading: Reading, release: int) -> None:
        self._seq += 1
        self.held_back += 1
        heapq.heappush(self._held, (release, self._seq, reading))

    def history(self, start: int, minutes: int) -> list[Reading]:
        """``minutes`` of readings from event time ``start``, in order (the past, before
        the demo: the training history)."""
        readings: list[Reading] = []
        for i in range(minutes):
            readings.extend(self.tick(start + i * self.minute_ms))
        return readings
