"""The feature engine: per-entity window state in event time. Pure; no I/O, no clock.

The streaming featurizer and the offline builder both drive this one class, record by
record, so they compute the same values by construction.

Time
----
* Each record carries its *event time* ``t`` (ms). Processing time never enters here.
* Every partition has a **watermark** ``wm = max(event time seen) - out_of_orderness``
  (or higher, when a watermark marker advanced it: see ``advance``). It never decreases.
* A window instance ``[start, end)`` **fires** (an ``on_time`` result) when ``wm >= end``
  and is **final** when ``wm >= end + allowed_lateness``; its state is then dropped.
* A record is **late** for a window when a window instance containing it is final. It is
  then left out of that instance, reported (``process`` returns the reason) and counted;
  it still updates the instances that are not final. A record that lands in an instance
  that has fired but is not final updates it and an ``updated`` result is emitted.
  Lateness is judged against the watermark *before* the record itself is applied.
* Sessions: lateness is judged against the session the record would join. A record
  within ``gap`` of a session still open (not final) joins it, bridging sessions it
  connects, however old ``t`` is; if that session has fired, an ``updated`` result
  follows. A record that would join a final session is late (its state was dropped),
  and so is one that joins nothing when the session it would open, ``[t, t + gap)``,
  is already final (``t + gap + lateness <= wm``). So the sessions of the accepted
  records are exactly the sessions a batch computation over them finds.

Features as of a request's event time
-------------------------------------
A request for entity ``e`` at event time ``t``, at a position in the log, gets for each
feature the aggregate over **the most recent window instance of its window that ends at
or before t**, over the events of ``e`` that precede the request in the log and are not
late for that instance:

* tumbling / hopping: the instance ending at ``E = floor(t / hop) * hop``, i.e.
  ``[E - size, E)``. With a short hop this is a sliding window at hop resolution.
* session: the session with the greatest ``end = last + gap`` that is ``<= t``.

Every event counted has event time ``< end <= t``: a request never sees the future.
Where that instance holds no events the value is empty (0 for count, sum and distinct;
NaN for the rest). Where it was already dropped and a newer instance is final (a request
older than ``wm - allowed_lateness``), the values are NaN. The value depends only on the
partition's log up to the request, so offline replay of the log reproduces it exactly.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from typing import Any

from modelstream.features.aggregates import NAN, Slots
from modelstream.features.definitions import FeatureSet
from modelstream.features.plan import Plan, WindowResult, compile_plans
from modelstream.features.snapshot import (
    END_OF_TIME,
    FINAL,
    FIRE,
    NO_WATERMARK,
    EntityState,
    PartitionState,
    Snapshots,
)

__all__ = ["END_OF_TIME", "NO_WATERMARK", "FeatureEngine"]


class FeatureEngine(Snapshots):
    """Computes a :class:`FeatureSet` over records fed in log order, per partition."""

    def __init__(self, feature_set: FeatureSet) -> None:
        self.feature_set = feature_set
        self.plans = compile_plans(feature_set)
        self._ooo = feature_set.out_of_orderness_ms
        self._lateness = feature_set.allowed_lateness_ms
        self._parts: dict[int, PartitionState] = {}
        self._out: list[WindowResult] = []

    # -- feeding ------------------------------------------------------------------------

    def partition(self, partition: int) -> PartitionState:
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = PartitionState(partition, len(self.plans))
        return part

    def process(self, partition: int, entity: str, t: int, values: Mapping[str, Any]) -> str | None:
        """Apply one event; return why it was late (for some window), or ``None``."""
        part = self._parts.get(partition) or self.partition(partition)
        wm = part.wm
        st = part.entities.get(entity)
        if st is None:
            st = part.entities[entity] = EntityState(self.plans)
        late: str | None = None
        for plan in self.plans:
            if plan.session:
                reason = self._session_event(part, st, entity, plan, t, values, wm)
            else:
                reason = self._pane_event(part, st, entity, plan, t, values, wm)
            if reason is not None:
                late = reason if late is None else f"{late}; {reason}"
        part.dirty[entity] = None
        if late is not None:
            part.late += 1
        if t > part.max_ts:
            part.max_ts = t
            if t - self._ooo > wm:
                self._advance(part, t - self._ooo)
        return late

    def advance(self, partition: int, watermark: int) -> None:
        """Raise ``partition``'s watermark to ``watermark`` (a marker record; idle timeout)."""
        part = self.partition(partition)
        if watermark > part.wm:
            self._advance(part, watermark)

    def flush(self) -> None:
        """End of input: fire and finalize every window of every partition."""
        for part in self._parts.values():
            self._advance(part, END_OF_TIME)

    def drain(self) -> list[WindowResult]:
        """The window results emitted since the last call."""
        out, self._out = self._out, []
        return out

    def watermark(self, partition: int) -> int:
        part = self._parts.get(partition)
        return part.wm if part is not None else NO_WATERMARK

    def late_count(self, partition: int) -> int:
        part = self._parts.get(partition)
        return part.late if part is not None else 0

    # -- tumbling and hopping windows ---------------------------------------------------

    def _pane_event(  # noqa: PLR0917 - hot path: positional calls are cheaper
        self,
        part: PartitionState,
        st: EntityState,
        entity: str,
        plan: Plan,
        t: int,
        values: Mapping[str, Any],
        wm: int,
    ) -> str | None:
        hop = plan.hop
        p = t - t % hop
        lateness = self._lateness
        if p + plan.size + lateness <= wm:
            return f"{plan.label}: every window containing t={t} is final (watermark {wm})"
        panes = st.windows[plan.index]
        pane = panes.get(p)
        if pane is None:
            pane = panes[p] = plan.new_pane()
            self._register(part, plan, entity, p, wm)
        for agg, o, fld in plan.feats:
            if fld is None:
                agg.update(pane, o, t, 1)
            else:
                x = values.get(fld)
                if x is not None:
                    agg.update(pane, o, t, x)
        if p + hop > wm:
            return None
        reason = None
        for end in range(p + hop, min(p + plan.size, wm) + 1, hop):
            if end + lateness <= wm:
                reason = f"{plan.label}: window [{end - plan.size},{end}) is final (watermark {wm})"
            else:
                self._emit(part, entity, plan, end - plan.size, end, "updated", panes)
        return reason

    def _register(self, part: PartitionState, plan: Plan, entity: str, p: int, wm: int) -> None:
        registry = part.registry[plan.index]
        lateness = self._lateness
        for end in range(p + plan.hop, p + plan.size + 1, plan.hop):
            if end + lateness <= wm:
                continue
            entities = registry.get(end)
            if entities is None:
                registry[end] = entities = {}
                if end > wm:
                    heapq.heappush(part.timers, (end, FIRE, plan.index, end, "", 0))
                heapq.heappush(part.timers, (end + lateness, FINAL, plan.index, end, "", 0))
            entities[entity] = None

    def _emit(  # noqa: PLR0917 - hot path: positional calls are cheaper
        self,
        part: PartitionState,
        entity: str,
        plan: Plan,
        start: int,
        end: int,
        kind: str,
        panes: dict[int, Slots] | None = None,
        values: list[float] | None = None,
    ) -> None:
        if values is None:
            assert panes is not None
            values = plan.window_values(panes, end)
        self._out.append(
            WindowResult(
                entity,
                part.number,
                plan.label,
                start,
                end,
                kind,
                dict(zip(plan.names, values, strict=True)),
            )
        )

    # -- sessions -----------------------------------------------------------------------

    def _session_event(  # noqa: PLR0917 - hot path: positional calls are cheaper
        self,
        part: PartitionState,
        st: EntityState,
        entity: str,
        plan: Plan,
        t: int,
        values: Mapping[str, Any],
        wm: int,
    ) -> str | None:
        gap = plan.gap
        closed = st.final[plan.index]
        if closed is not None and closed[1] - gap < t < closed[0]:
            # It belongs to a session already final: taking it would need the dropped
            # state (and would start a session that overlaps the final one).
            return (
                f"{plan.label}: t={t} falls in session [{closed[1]},{closed[0]}), "
                f"which is final (watermark {wm})"
            )
        # a session is [start, last, pane, end of its pending fire timer or None]
        sessions: list[list[Any]] = st.windows[plan.index]
        session: list[Any] | None = None
        bridged: list[list[Any]] | None = None
        for other in sessions:
            if other[0] - gap < t < other[1] + gap:
                if session is None:
                    session = other
                elif bridged is None:
                    bridged = [other]
                else:
                    bridged.append(other)
        if session is None:
            if t + gap + self._lateness <= wm:
                return f"{plan.label}: a session at t={t} would already be final (watermark {wm})"
            session = [t, t, plan.new_pane(), None]
            sessions.append(session)
        else:
            if bridged is not None:  # the event bridges sessions: they become one
                for other in bridged:
                    session[0] = min(session[0], other[0])
                    session[1] = max(session[1], other[1])
                    plan.merge_into(session[2], other[2])
                    sessions.remove(other)
                session[3] = None  # timers find sessions by start: theirs went stale
            if t < session[0]:
                session[0] = t
                session[3] = None
            elif t > session[1]:
                session[1] = t
        pane = session[2]
        for agg, o, fld in plan.feats:
            if fld is None:
                agg.update(pane, o, t, 1)
            else:
                x = values.get(fld)
                if x is not None:
                    agg.update(pane, o, t, x)
        end = session[1] + gap
        if end > wm:
            # One pending fire timer per session: when it goes off early (the session
            # grew meanwhile) it is pushed again, which costs less than a push per event.
            if session[3] is None:
                session[3] = end
                heapq.heappush(part.timers, (end, FIRE, plan.index, end, entity, session[0]))
        else:
            self._emit(part, entity, plan, session[0], end, "updated", values=plan.results(pane))
            final = (end + self._lateness, FINAL, plan.index, end, entity, session[0])
            heapq.heappush(part.timers, final)
        return None

    # -- the watermark moves ------------------------------------------------------------

    def _advance(self, part: PartitionState, wm: int) -> None:
        part.wm = wm
        timers = part.timers
        while timers and timers[0][0] <= wm:
            _, kind, index, end, entity, start = heapq.heappop(timers)
            plan = self.plans[index]
            if plan.session:
                self._session_timer(part, plan, kind, end, entity, start)
            elif kind == FIRE:
                for name in part.registry[index].get(end, ()):
                    panes = part.entities[name].windows[index]
                    self._emit(part, name, plan, end - plan.size, end, "on_time", panes)
            else:
                for name in part.registry[index].pop(end, ()):
                    st = part.entities[name]
                    panes = st.windows[index]
                    st.final[index] = [end, end - plan.size, plan.window_values(panes, end)]
                    panes.pop(end - plan.size, None)  # no later window contains this pane
                    part.dirty[name] = None

    def _session_timer(  # noqa: PLR0917 - hot path: positional calls are cheaper
        self, part: PartitionState, plan: Plan, kind: int, end: int, entity: str, start: int
    ) -> None:
        st = part.entities.get(entity)
        if st is None:
            return
        session = None
        for candidate in st.windows[plan.index]:
            if candidate[0] == start:
                session = candidate
                break
        if session is None:
            return  # stale: the session was merged or dropped since
        current = session[1] + plan.gap
        if kind == FIRE:
            if session[3] != end:
                return  # stale: another fire timer is the live one
            if current > part.wm:  # the session grew since: wait for its new end
                session[3] = current
                heapq.heappush(part.timers, (current, FIRE, plan.index, current, entity, start))
                return
            session[3] = None
            self._emit(
                part, entity, plan, start, current, "on_time", values=plan.results(session[2])
            )
            final = (current + self._lateness, FINAL, plan.index, current, entity, start)
            heapq.heappush(part.timers, final)
        elif current == end:  # else stale: it grew after firing, a newer final timer exists
            st.final[plan.index] = [end, start, plan.results(session[2])]
            st.windows[plan.index].remove(session)
            part.dirty[entity] = None

    # -- requests -----------------------------------------------------------------------

    def features_as_of(self, partition: int, entity: str | None, t: int) -> dict[str, float]:
        """Every feature of ``entity`` as of event time ``t`` (see the module docstring)."""
        part = self._parts.get(partition)
        st = part.entities.get(entity) if part is not None and entity is not None else None
        out: dict[str, float] = {}
        for plan in self.plans:
            if st is None:
                values = plan.empty()
            elif plan.session:
                values = self._session_as_of(st, plan, t)
            else:
                end = t - t % plan.hop
                final = st.final[plan.index]
                if final is not None and final[0] >= end:
                    values = final[2] if final[0] == end else [NAN] * len(plan.names)
                else:
                    values = plan.window_values(st.windows[plan.index], end)
            out.update(zip(plan.names, values, strict=True))
        return out

    @staticmethod
    def _session_as_of(st: EntityState, plan: Plan, t: int) -> list[float]:
        best_end, best = NO_WATERMARK, None
        final = st.final[plan.index]
        if final is not None and final[0] <= t:
            best_end, best = final[0], final[2]
        for _start, last, pane, _ in st.windows[plan.index]:
            end = last + plan.gap
            if best_end < end <= t:
                best_end, best = end, plan.results(pane)
        return best if best is not None else plan.empty()
