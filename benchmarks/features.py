"""Feature engine speed: events/s through 5 features over 3 windows for 10,000 entities.

Run: ``.venv/bin/python benchmarks/features.py``. Measures, on one core:

* ``engine``: the hot path alone (:meth:`FeatureEngine.process`, window firing included);
* ``engine + JSON decode``: the same with each event decoded from its record bytes;
* ``checkpointed (memory store)`` / ``checkpointed (SQLite store)``: plus a checkpoint
  (changelog on the memory backplane, and the store) every 50,000 events; every entity
  has changed by then, so each checkpoint writes all 10,000;
* ``featurizer (memory backplane)``: the whole role with its defaults, records read
  from ``S.events`` on the memory backplane, decoded, window results produced onto
  ``S.features``, checkpoints as configured by default (memory store);
* memory per entity (tracemalloc: the engine's state after the run / entities).

Prints a Rich table and writes ``benchmarks/results/features.json`` (with the load
average when it ran: figures from a busy machine are not comparable). Bounded: about a
minute.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from modelstream.backplane.memory import MemoryBackplane
from modelstream.backplane.records import OutRecord, Record
from modelstream.clock import SystemClock
from modelstream.features.aggregates import Count, Max, Mean, Slope, Std
from modelstream.features.checkpoint import Checkpointer
from modelstream.features.definitions import Feature, FeatureSet, Hopping, Session, Tumbling
from modelstream.features.engine import FeatureEngine
from modelstream.features.featurizer import Featurizer
from modelstream.features.records import EventDecoder
from modelstream.features.state import MemoryStateStore, SqliteStateStore, StateStore
from modelstream.settings import Settings

ENTITIES = 10_000
EVENTS = 400_000
CHECKPOINT_EVERY = 50_000
RESULTS = Path(__file__).parent / "results" / "features.json"

FEATURES = FeatureSet(
    "bench",
    "1",
    [
        Feature("temp_mean_1m", field="temp", agg=Mean(), window=Tumbling(60_000)),
        Feature("temp_max_1m", field="temp", agg=Max(), window=Tumbling(60_000)),
        Feature("temp_std_5m", field="temp", agg=Std(), window=Hopping(300_000, 60_000)),
        Feature("events_5m", agg=Count(), window=Hopping(300_000, 60_000)),
        Feature("temp_trend_session", field="temp", agg=Slope(), window=Session(30_000)),
    ],
    out_of_orderness_ms=2_000,
    allowed_lateness_ms=10_000,
)


def events() -> list[tuple[str, int, dict[str, float]]]:
    """Every entity reports every ~10 s of event time; a little disorder."""
    names = [f"truck-{i}" for i in range(ENTITIES)]
    return [
        (names[i % ENTITIES], i - (i % 7) * 100, {"temp": 60.0 + (i * 7919 % 400) / 10})
        for i in range(EVENTS)
    ]


def run(
    data: list[tuple[str, int, dict[str, float]]], store: StateStore | None, decode: bool = False
) -> tuple[float, FeatureEngine]:
    engine = FeatureEngine(FEATURES)
    cp = None
    if store is not None:
        cp = Checkpointer(
            MemoryBackplane(Settings(backplane="memory://")), "cl", store, engine, dead_letter="dl"
        )
    decoder = EventDecoder(FEATURES)
    records = (
        [Record("e", 0, i, t, e.encode(), orjson.dumps(v)) for i, (e, t, v) in enumerate(data)]
        if decode
        else []
    )
    process = engine.process
    gc.collect()
    start = time.perf_counter()
    if decode:
        for record in records:
            entity, t, values = decoder.decode(record)
            process(0, entity, t, values)
            engine._out.clear()
    else:
        for n, (entity, t, values) in enumerate(data, 1):
            process(0, entity, t, values)
            if n % 1000 == 0:
                engine._out.clear()  # the featurizer publishes results per batch
            if cp is not None and n % CHECKPOINT_EVERY == 0:
                cp.checkpoint(0, n)
    elapsed = time.perf_counter() - start
    return len(data) / elapsed, engine


def run_featurizer(data: list[tuple[str, int, dict[str, float]]]) -> float:
    """Events/s through a :class:`Featurizer` with its defaults, on the memory backplane."""
    settings = Settings(backplane="memory://", default_partitions=1)
    backplane = MemoryBackplane(settings)
    backplane.create_topic("bench.events", 1)
    for i in range(0, len(data), 10_000):
        backplane.produce(
            "bench.events",
            [OutRecord(orjson.dumps(v), e.encode(), (), t) for e, t, v in data[i : i + 10_000]],
        )
    store = MemoryStateStore()
    featurizer = Featurizer(
        backplane, settings, "bench", FEATURES, clock=SystemClock(), store=store
    )
    gc.collect()
    start = time.perf_counter()
    while featurizer.stats.events < len(data):
        featurizer.run_once()
    elapsed = time.perf_counter() - start
    featurizer.stop()
    assert featurizer.stats.checkpoints > 0 and featurizer.stats.late == 0
    return len(data) / elapsed


def memory_per_entity(data: list[tuple[str, int, dict[str, float]]]) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    engine = FeatureEngine(FEATURES)
    for entity, t, values in data:
        engine.process(0, entity, t, values)
        if len(engine._out) > 10_000:
            engine._out.clear()
    engine._out.clear()
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / ENTITIES


def main() -> None:
    load = os.getloadavg()[0]  # before this run adds its own
    data = events()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        cases: list[tuple[str, Callable[[], StateStore | None], bool]] = [
            ("engine", lambda: None, False),
            ("engine + JSON decode", lambda: None, True),
            ("checkpointed (memory store)", MemoryStateStore, False),
            ("checkpointed (SQLite store)", lambda: SqliteStateStore(Path(tmp) / "s.db"), False),
        ]
        for name, make, decode in cases:
            rate, _ = run(data, make(), decode)
            rows.append({"case": name, "events_per_s": round(rate)})
    rate = run_featurizer(data)
    rows.append({"case": "featurizer (memory backplane)", "events_per_s": round(rate)})
    per_entity = memory_per_entity(data[: EVENTS // 2])
    table = Table(
        "case",
        "events/s",
        title=f"{EVENTS:,} events, {ENTITIES:,} entities, 5 features / 3 windows",
    )
    for row in rows:
        table.add_row(row["case"], f"{row['events_per_s']:,}")
    console = Console()
    console.print(table)
    console.print(f"memory per entity (engine state): {per_entity:,.0f} bytes")
    console.print(f"load average (1 min) before the run: {load:.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "events": EVENTS,
                "entities": ENTITIES,
                "features": len(FEATURES.features),
                "windows": len(FEATURES.windows),
                "results": rows,
                "memory_bytes_per_entity": round(per_entity),
                "python": platform.python_version(),
                "load_average_1m_before": round(load, 2),
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
