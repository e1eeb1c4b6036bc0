"""The feature engine's state, per partition and entity, and its JSON form (checkpoints).

:class:`PartitionState` holds a partition's watermark, timers and entities;
:class:`EntityState` one entity's open windows and last final window per plan. The
:class:`Snapshots` mixin of :class:`~modelstream.features.engine.FeatureEngine` turns an
entity's state into JSON (plain lists and numbers: checkpoints never pickle) and
rebuilds a partition from it, timers included, so a restored engine continues exactly
as the one that wrote the checkpoint would have.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from modelstream.errors import FeatureError
from modelstream.features.definitions import FeatureSet
from modelstream.features.plan import Plan, none_to_nan

NO_WATERMARK = -(2**62)
END_OF_TIME = 2**62
FIRE, FINAL = 0, 1  # timer kinds; at equal times a window fires before it is final


class EntityState:
    """One entity's panes (dict start -> pane) or sessions ([start, last, pane, timer]) per plan,
    and per plan the last final window ``[end, start, values]`` (for requests)."""

    __slots__ = ("final", "windows")

    def __init__(self, plans: tuple[Plan, ...]) -> None:
        self.windows: list[Any] = [[] if p.session else {} for p in plans]
        self.final: list[list[Any] | None] = [None] * len(plans)


class PartitionState:
    """Watermark, timers and entities of one partition."""

    __slots__ = ("dirty", "entities", "late", "max_ts", "number", "registry", "timers", "wm")

    def __init__(self, number: int, plans: int) -> None:
        self.number = number
        self.max_ts = NO_WATERMARK
        self.wm = NO_WATERMARK
        self.late = 0
        self.entities: dict[str, EntityState] = {}
        self.dirty: dict[str, None] = {}
        # per pane plan: window end -> entities with a pane in that window (insertion
        # ordered, so emission order is the same in every process)
        self.registry: list[dict[int, dict[str, None]]] = [{} for _ in range(plans)]
        self.timers: list[tuple[int, int, int, int, str, int]] = []


class Snapshots:
    """Checkpoint support of :class:`~modelstream.features.engine.FeatureEngine` (a mixin)."""

    feature_set: FeatureSet
    plans: tuple[Plan, ...]
    _parts: dict[int, PartitionState]
    _lateness: int

    if TYPE_CHECKING:

        def partition(self, partition: int) -> PartitionState: ...

        def _register(
            self, part: PartitionState, plan: Plan, entity: str, p: int, wm: int
        ) -> None: ...

    def partitions(self) -> list[int]:
        return sorted(self._parts)

    def take_dirty(self, partition: int) -> dict[str, bytes]:
        """The state of each entity changed since the last call, encoded as JSON (and
        forget them). Encoded one by one, so no decoded copy of every changed entity is
        alive at once (that would wake the garbage collector over the whole state)."""
        part = self._parts.get(partition)
        if part is None:
            return {}
        dirty, part.dirty = part.dirty, {}
        entities, dumps, encode = part.entities, orjson.dumps, self._entity_json
        return {name: dumps(encode(entities[name])) for name in dirty}

    def entity_json(self, partition: int, entity: str) -> dict[str, Any] | None:
        """The state of ``entity`` for a checkpoint (shares the engine's lists: serialize
        it with orjson before the engine goes on), or ``None``."""
        part = self._parts.get(partition)
        st = part.entities.get(entity) if part is not None else None
        return None if st is None else self._entity_json(st)

    def meta(self, partition: int) -> dict[str, int]:
        part = self.partition(partition)
        return {"wm": part.wm, "max_ts": part.max_ts, "late": part.late}

    def _entity_json(self, st: EntityState) -> dict[str, Any]:
        # Checkpoints are the engine's hottest path after process(), so this copies
        # nothing: sessions and finals are already lists of numbers, panes become
        # (start, pane) pairs. The result shares the engine's lists, so it must be
        # serialized (orjson: NaN becomes null) before the engine goes on.
        windows = [
            w if plan.session else list(w.items())
            for plan, w in zip(self.plans, st.windows, strict=True)
        ]
        return {"w": windows, "f": st.final}

    def drop(self, partition: int) -> None:
        """Forget a partition (it was revoked; its next owner restores it)."""
        self._parts.pop(partition, None)

    def restore(
        self, partition: int, meta: Mapping[str, int], entities: Iterable[tuple[str, Any]]
    ) -> None:
        """Rebuild ``partition`` from a checkpoint: its meta and its entities' JSON state."""
        part = self._parts[partition] = PartitionState(partition, len(self.plans))
        part.wm, part.max_ts, part.late = meta["wm"], meta["max_ts"], meta.get("late", 0)
        try:
            for name, state in entities:
                st = part.entities[name] = EntityState(self.plans)
                for plan, raw, final in zip(self.plans, state["w"], state["f"], strict=True):
                    if final is not None:
                        st.final[plan.index] = [final[0], final[1], none_to_nan(final[2])]
                    if plan.session:
                        st.windows[plan.index] = [list(s) for s in raw]
                        for session in st.windows[plan.index]:
                            self._restore_session_timer(part, plan, name, session)
                    else:
                        st.windows[plan.index] = {p: pane for p, pane in raw}
                        for p, _ in raw:
                            self._register(part, plan, name, p, part.wm)
        except (KeyError, TypeError, ValueError) as exc:
            raise FeatureError(
                f"feature state of partition {partition} does not match feature set "
                f"{self.feature_set.ref} ({exc!r}); a changed feature set needs a new "
                "version and a rebuild from the events (delete the changelog)"
            ) from None

    def _restore_session_timer(
        self, part: PartitionState, plan: Plan, entity: str, session: list[Any]
    ) -> None:
        start, end = session[0], session[1] + plan.gap
        if end > part.wm:
            session[3] = end
            heapq.heappush(part.timers, (end, FIRE, plan.index, end, entity, start))
        else:
            session[3] = None
            final = (end + self._lateness, FINAL, plan.index, end, entity, start)
            heapq.heappush(part.timers, final)
