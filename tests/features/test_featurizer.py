"""The featurizer role on the memory backplane: enrichment, lateness, idleness, restore."""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

import orjson
import pytest

from modelstream.backplane.memory import MemoryBackplane
from modelstream.backplane.records import OutRecord, record_size
from modelstream.clock import ManualClock
from modelstream.errors import BackplaneUnavailable
from modelstream.features import offline
from modelstream.features.aggregates import Count
from modelstream.features.checkpoint import Checkpointer
from modelstream.features.definitions import Feature, FeatureSet, Session
from modelstream.features.engine import FeatureEngine
from modelstream.features.featurizer import Featurizer
from modelstream.features.records import REASON_HEADER, changelog_topic, request_record
from modelstream.features.state import MemoryStateStore
from modelstream.settings import Settings
from modelstream.wire.requests import InferenceRequest
from modelstream.wire.tensors import Tensor
from tests.features.helpers import enriched, event, read_all, request, truck_features

SETTINGS = Settings(backplane="memory://", default_partitions=2)


def _featurizer(
    bp: MemoryBackplane, fs: Any, clock: ManualClock | None = None, **kw: Any
) -> Featurizer:
    return Featurizer(
        bp, SETTINGS, "trucks", fs, clock=clock or ManualClock(), store=MemoryStateStore(), **kw
    )


def _checkpointer(bp: MemoryBackplane, engine: FeatureEngine) -> Checkpointer:
    """A checkpointer with a store of its own: a restore reads the changelog alone."""
    topic, store = changelog_topic("trucks"), MemoryStateStore()
    return Checkpointer(bp, topic, store, engine, dead_letter="trucks.dead-letter")


def _run(fz: Featurizer, steps: int = 5) -> None:
    for _ in range(steps):
        fz.run_once(timeout=0.01)


def _plain(features: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in features.items()}


def test_requests_get_features_as_of_their_event_time() -> None:
    bp = MemoryBackplane(SETTINGS)
    bp.create_topic("trucks.events", 2)
    bp.produce("trucks.events", [event("t1", t, float(t)) for t in range(0, 100, 10)])
    bp.produce("trucks.events", [request("r1", "t1", 150), request("r0", "t1", 99)])
    fz = _featurizer(bp, truck_features())
    _run(fz)
    got = enriched(bp, "trucks.requests")
    # [0, 100) is the latest tumbling window ending at or before 150
    assert got["r1"][0]["temp_mean"] == pytest.approx(45.0)
    assert got["r1"][0]["events"] == 10
    assert got["r1"][0]["temp_last"] == 90.0  # the session ended at 140 <= 150
    # at 99 no window has ended yet: empty values, never the future
    assert got["r0"][0]["events"] == 0
    assert got["r0"][0]["temp_mean"] is None
    keys = {r.key for r in read_all(bp, "trucks.requests")}
    assert keys == {b"r1", b"r0"}  # re-keyed by request id for the rendezvous
    fz.stop()


def test_late_records_update_within_lateness_and_go_to_late_beyond() -> None:
    bp = MemoryBackplane(SETTINGS)
    fz = _featurizer(bp, truck_features(ooo=0, lateness=50))
    bp.produce("trucks.events", [event("t1", 0, 1.0), event("t1", 120, 5.0)])
    bp.produce("trucks.events", [event("t1", 50, 3.0)])  # [0,100) fired, not final: update
    bp.produce("trucks.events", [event("t1", 200, 7.0), event("t1", 10, 9.0)])  # final: late
    _run(fz)
    results = [orjson.loads(r.value) for r in read_all(bp, "trucks.features")]
    first = [r for r in results if r["window"] == "tumbling(100)" and r["start"] == 0]
    assert [(r["kind"], r["values"]["temp_mean"]) for r in first] == [
        ("on_time", 1.0),
        ("updated", 2.0),
    ]
    late = read_all(bp, "trucks.late")
    assert len(late) == 1 and late[0].timestamp == 10
    assert b"is final" in (late[0].header(REASON_HEADER) or b"")
    assert fz.stats.late == 1
    fz.stop()


def test_a_record_inside_an_open_session_is_not_late_however_old() -> None:
    fs = FeatureSet("s", "1", [Feature("n", agg=Count(), window=Session(10))])
    engine = FeatureEngine(fs)
    for t in range(0, 101, 5):  # one session of "a": [0, 110)
        assert engine.process(0, "a", t, {}) is None
    engine.process(0, "b", 105, {})  # watermark 105: a's session is still open
    assert engine.process(0, "a", 50, {}) is None  # it joins that session
    assert engine.late_count(0) == 0
    engine.flush()
    sessions = [(r.start, r.end, r.kind, r.values["n"]) for r in engine.drain() if r.entity == "a"]
    assert sessions == [(0, 110, "on_time", 22.0)]


def test_sessions_update_within_lateness_and_go_to_late_beyond() -> None:
    bp = MemoryBackplane(SETTINGS)
    fs = FeatureSet(
        "trucks", "1", [Feature("n", agg=Count(), window=Session(10))], allowed_lateness_ms=30
    )
    fz = _featurizer(bp, fs)
    bp.produce("trucks.events", [event("a", 0, 1.0), event("a", 5, 1.0), event("b", 20, 1.0)])
    bp.produce("trucks.events", [event("a", 3, 1.0)])  # [0,15) fired, not final: update
    bp.produce("trucks.events", [event("b", 100, 1.0)])  # watermark 100: [0,15) final
    bp.produce("trucks.events", [event("a", 12, 1.0), event("a", 60, 1.0)])  # both late
    _run(fz)
    results = [orjson.loads(r.value) for r in read_all(bp, "trucks.features")]
    a = [(r["start"], r["end"], r["kind"], r["values"]["n"]) for r in results if r["entity"] == "a"]
    assert a == [(0, 15, "on_time", 2.0), (0, 15, "updated", 3.0)]
    late = read_all(bp, "trucks.late")
    assert [r.timestamp for r in late] == [12, 60]
    reasons = [r.header(REASON_HEADER) or b"" for r in late]
    assert b"falls in session [0,15)" in reasons[0]  # it would extend a final session
    assert b"would already be final" in reasons[1]  # the session it would open is final
    fz.stop()


def test_an_idle_partition_does_not_hold_its_windows_back_forever() -> None:
    bp = MemoryBackplane(SETTINGS)
    clock = ManualClock()
    fz = _featurizer(bp, truck_features(idle=1_000), clock)
    bp.produce("trucks.events", [event("t1", 10, 1.0), event("t1", 20, 2.0)])
    _run(fz, 2)
    assert read_all(bp, "trucks.features") == []  # watermark 20: nothing ended
    clock.advance(1_500)  # no event for longer than the idle timeout
    _run(fz, 3)
    results = [orjson.loads(r.value) for r in read_all(bp, "trucks.features")]
    assert {(r["window"], r["start"]) for r in results} >= {("tumbling(100)", 0)}
    markers = [r for r in read_all(bp, "trucks.events") if not r.value]
    assert len(markers) == 1  # the advance is on the log, so replays see it too
    fz.stop()


def test_restores_from_the_changelog_and_reproduces_the_same_features() -> None:
    bp = MemoryBackplane(SETTINGS)
    records = []
    for i in range(300):
        entity = f"t{i % 7}"
        records.append(event(entity, i * 7, float(i % 13)))
        if i % 10 == 9:
            records.append(request(f"r{i}", entity, i * 7 + 3))
    bp.produce("trucks.events", records[:200])
    first = _featurizer(bp, truck_features(ooo=20), checkpoint_every=25, max_records=30)
    _run(first, 6)
    assert first._consumer is not None
    first._consumer.close()  # dies without a final checkpoint
    bp.produce("trucks.events", records[200:])
    second = _featurizer(bp, truck_features(ooo=20))  # fresh store: restore from changelog
    _run(second, 10)
    # it resumed at the checkpoint: the events before it were not applied again
    assert sum(second.resumed_at.values()) > 0
    assert second.stats.events < 300
    got = enriched(bp, "trucks.requests")
    expected = offline.build(truck_features(ooo=20), offline.topic_entries(bp, "trucks.events"))
    assert len(got) == len(expected.request_rows) == 30
    for row in expected.request_rows:
        want = _plain({k: row[k] for k in truck_features().names})
        assert all(copy == want for copy in got[row["request_id"]]), row["request_id"]
    second.stop()


class _CutShort(MemoryBackplane):
    """A backplane on which the checkpoint marker cannot be written (a crash there)."""

    fail = False

    def produce(self, topic: str, records: Any) -> Any:
        if self.fail and any(r.key and r.key.startswith(b"\0") for r in records):
            raise RuntimeError("crash")
        return super().produce(topic, records)


def test_a_checkpoint_cut_short_restores_the_previous_one() -> None:
    bp = _CutShort(SETTINGS)
    fs = truck_features()
    engine = FeatureEngine(fs)
    cp = _checkpointer(bp, engine)
    engine.process(0, "a", 10, {"temp": 1.0})
    cp.checkpoint(0, 1)
    good = orjson.loads(orjson.dumps(engine.entity_json(0, "a")))  # a snapshot
    engine.process(0, "a", 20, {"temp": 2.0})
    engine.process(0, "b", 20, {"temp": 2.0})
    bp.fail = True
    with pytest.raises(RuntimeError):
        cp.checkpoint(0, 3)  # entity records written, marker not
    bp.fail = False
    for _ in range(2):  # restore, then checkpoint and restore again: still consistent
        again = FeatureEngine(fs)
        restorer = _checkpointer(bp, again)
        assert restorer.restore(0) == 1
        assert orjson.loads(orjson.dumps(again.entity_json(0, "a"))) == good
        assert again.entity_json(0, "b") is None
        restorer.checkpoint(0, 1)


def test_one_entity_in_two_partitions_restores_each_partitions_state() -> None:
    bp = MemoryBackplane(SETTINGS)
    fs = truck_features()
    engine = FeatureEngine(fs)
    cp = _checkpointer(bp, engine)
    engine.process(0, "x", 10, {"temp": 1.0})
    engine.process(1, "x", 10, {"temp": 5.0})
    engine.process(1, "x", 20, {"temp": 6.0})
    cp.checkpoint(0, 1)
    cp.checkpoint(1, 2)
    again = FeatureEngine(fs)  # a fresh store: rebuilt from the changelog alone
    restorer = _checkpointer(bp, again)
    assert (restorer.restore(0), restorer.restore(1)) == (1, 2)
    for e in (engine, again):
        e.flush()
    got = [(r.partition, r.window, r.start, r.values) for r in again.drain()]
    want = [(r.partition, r.window, r.start, r.values) for r in engine.drain()]
    assert got == want  # each partition's windows, from its own state
    assert {p for p, *_ in got} == {0, 1}


def test_restore_skips_unreadable_changelog_records_and_dead_letters_them() -> None:
    bp = MemoryBackplane(SETTINGS)
    fs = truck_features()
    engine = FeatureEngine(fs)
    cp = _checkpointer(bp, engine)
    for entity, temp in (("a", 1.0), ("b", 2.0), ("c", 3.0)):
        engine.process(0, entity, 10, {"temp": temp})
    cp.checkpoint(0, 3)
    good = {e: orjson.loads(orjson.dumps(engine.entity_json(0, e))) for e in "ab"}
    topic = changelog_topic("trucks")
    poison = [
        OutRecord(b'{"p": 0, "epoch": 1, "sta', b"0/c"),  # truncated: replaces c's state
        OutRecord(orjson.dumps({"p": 0, "epoch": "one", "state": None}), b"0/d"),
        OutRecord(b'{"epoch": 1, "offset": 3, "meta": ', b"\0checkpoint/1"),
    ]
    offsets = [bp.produce(topic, [r])[0].offset for r in poison]
    again = FeatureEngine(fs)
    restorer = _checkpointer(bp, again)
    for _ in range(2):  # a second restore finds the same poison: dead-lettered once
        assert restorer.restore(0) == 3  # partition 0's marker is intact
        assert restorer.restore(1) is None  # a poisoned marker: start from the beginning
    assert {e: orjson.loads(orjson.dumps(again.entity_json(0, e))) for e in "ab"} == good
    assert again.entity_json(0, "c") is None  # its only record is the poison
    dead = {
        int(r.header("x-source-offset") or -1): (r.header("x-reason") or b"").decode()
        for r in read_all(bp, "trucks.dead-letter")
    }
    assert len(read_all(bp, "trucks.dead-letter")) == len(dead) == 3
    reasons = [dead[offset] for offset in offsets]
    assert "not valid JSON" in reasons[0]
    assert "'epoch' must be int" in reasons[1]
    assert "checkpoint marker" in reasons[2] and "as if none" in reasons[2]
    restorer.checkpoint(0, 3)  # rewrites the poisoned entities: no poison left to skip
    third = _checkpointer(bp, FeatureEngine(fs))
    assert third.restore(0) == 3
    assert len(read_all(bp, "trucks.dead-letter")) == 3


def test_a_request_too_large_once_enriched_is_dead_lettered_and_the_next_goes_on() -> None:
    tensor = Tensor("x", "FP32", (1, 300), (0.0,) * 300)
    big = request_record(InferenceRequest("r-big", "trucks", 150, 1150, (tensor,), entity="t1"))
    # The raw request fits; with its features it does not.
    settings = SETTINGS.model_copy(update={"max_record_bytes": record_size(big) + 10})
    bp = MemoryBackplane(settings)
    bp.create_topic("trucks.events", 2)
    bp.produce("trucks.events", [event("t1", 10, 1.0), big, request("r-next", "t1", 160)])
    fz = Featurizer(bp, settings, "trucks", truck_features(), clock=ManualClock(),
                    store=MemoryStateStore())  # fmt: skip
    _run(fz)
    assert set(enriched(bp, "trucks.requests")) == {"r-next"}
    (dead,) = read_all(bp, "trucks.dead-letter")
    reason = (dead.header("x-reason") or b"").decode()
    assert "above the backplane's record limit" in reason, reason
    # Its copy, with the dead-letter headers, would not fit either: it is cut to fit.
    assert big.value.startswith(dead.value) and len(dead.value) < len(big.value)
    assert dead.header("x-original-size") == str(len(big.value)).encode()
    assert record_size(OutRecord(dead.value, dead.key, dead.headers)) <= bp.max_record_bytes
    assert fz.stats.dead_letters == 1


def test_a_backplane_failure_is_a_one_line_warning_and_the_featurizer_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bp = MemoryBackplane(SETTINGS)
    bp.create_topic("trucks.events", 2)
    fz = _featurizer(bp, truck_features())
    real, failed = fz.run_once, threading.Event()

    def run_once_failing_once(timeout: float) -> Any:
        if not failed.is_set():
            failed.set()
            raise BackplaneUnavailable("the broker is down; check that it runs")
        return real(timeout=timeout)

    monkeypatch.setattr(fz, "run_once", run_once_failing_once)
    with caplog.at_level(logging.WARNING, logger="modelstream.features.featurizer"):
        fz.start()
        try:
            assert failed.wait(10)
            bp.produce("trucks.events", [event("t1", 0, 1.0), request("r1", "t1", 5)])
            deadline = time.monotonic() + 10
            while not enriched(bp, "trucks.requests") and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            fz.stop()
    assert "r1" in enriched(bp, "trucks.requests")
    (record,) = [r for r in caplog.records if r.name == "modelstream.features.featurizer"]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "the broker is down" in record.getMessage()
