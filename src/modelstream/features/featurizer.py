"""The featurizer role: per-entity features in event time, between the gateway and scorers.

It reads ``S.events`` in the consumer group ``S.featurizer`` (events and requests, both
keyed by entity; see :mod:`modelstream.features.records` for the topology), and for each
partition it owns:

* feeds events to the :class:`FeatureEngine` in offset order; late ones go to ``S.late``
  with the reason; window results go to ``S.features``;
* answers each request with the entity's features as of the request's event time
  (:meth:`FeatureEngine.features_as_of`) and writes it, keyed by its id, to ``S.requests``;
* every ``checkpoint_interval_ms`` (clock time) or ``checkpoint_every`` records,
  checkpoints the partition (:mod:`modelstream.features.checkpoint`) and commits. A
  checkpoint costs per entity changed since the last (its state is encoded and
  written), not per record, so the record bound is high: it only caps the replay after
  a crash when records come faster than the interval;
* appends a watermark marker when the partition has been idle ``idle_timeout_ms``.

Outputs are produced before the checkpoint that covers them, so delivery is
at-least-once; after a crash the records since the last checkpoint are processed again
from the same state and yield identical outputs (consumers dedupe by request id or by
``(entity, window, start, kind)``). Undecodable records go to ``S.dead-letter``, those
of the changelog too (restore skips them: :mod:`modelstream.features.checkpoint`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence

import msgspec

from modelstream.backplane.port import Backplane, Consumer
from modelstream.backplane.records import OutRecord, Record, TopicPartition, record_size
from modelstream.backplane.retry import Backoff
from modelstream.clock import Clock
from modelstream.errors import DecodeError
from modelstream.features import records as rec
from modelstream.features.checkpoint import Checkpointer
from modelstream.features.definitions import FeatureSet
from modelstream.features.engine import NO_WATERMARK, FeatureEngine
from modelstream.features.state import StateStore
from modelstream.logs import log_recovered
from modelstream.settings import Settings
from modelstream.wire.deadletter import dead_letter_record
from modelstream.wire.requests import decode_request
from modelstream.wire.topics import ServiceTopics

log = logging.getLogger(__name__)


@dataclasses.dataclass
class FeaturizerStats:
    events: int = 0
    requests: int = 0
    late: int = 0
    results: int = 0
    dead_letters: int = 0
    checkpoints: int = 0


class Featurizer:
    """Runs the featurizer of ``service`` on a thread (``start``/``stop``), or step by
    step with :meth:`run_once` (tests, embedding)."""

    def __init__(
        self,
        backplane: Backplane,
        settings: Settings,
        service: str,
        feature_set: FeatureSet,
        *,
        clock: Clock,
        store: StateStore,
        checkpoint_every: int = 200_000,
        checkpoint_interval_ms: int = 2_000,
        max_records: int = 500,
    ) -> None:
        self._bp = backplane
        self._settings = settings
        self._topics = ServiceTopics(service)
        self._events = self._topics.events
        self.feature_set = feature_set
        self._clock = clock
        self._store = store
        self._every = checkpoint_every
        self._interval = checkpoint_interval_ms
        self._max_records = max_records
        self.engine = FeatureEngine(feature_set)
        self._decoder = rec.EventDecoder(feature_set)
        self._checkpointer = Checkpointer(
            backplane,
            self._topics.features_changelog,
            store,
            self.engine,
            dead_letter=self._topics.dead_letter,
        )
        self._consumer: Consumer | None = None
        self._next: dict[int, int] = {}  # partition -> next offset to apply
        self._since: dict[int, int] = {}  # partition -> records since its checkpoint
        self._seen: dict[int, int] = {}  # partition -> clock ms of its last event
        self._last_checkpoint = 0
        # partition -> the offset it resumed at when last assigned (its checkpoint's, or
        # the start of the log without one): what an operator checks after a restart
        self.resumed_at: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = FeaturizerStats()

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="featurizer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop, checkpoint every owned partition, and leave the group."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._consumer is not None:
            self._checkpoint_all(force=True)
            self._consumer.close()
            self._consumer = None

    def _run(self) -> None:
        backoff = Backoff(self._settings.retry_max_s())
        while not self._stop.is_set():
            try:
                self.run_once(timeout=0.1)
            except Exception as exc:  # a role keeps running; the error is logged
                wait = backoff.failed()
                log_recovered(
                    log,
                    exc,
                    "featurizer step failed, retrying from the last checkpoint in %.1f s",
                    wait,
                )
                # The step may have applied records whose outputs were never produced
                # (a broker gone away): resume every partition from its checkpoint.
                self.rewind()
                self._stop.wait(wait)
            else:
                backoff.succeeded()

    def rewind(self) -> None:
        """Forget every partition's progress since its last checkpoint: the next step
        restores each from it and reads on from its offset (outputs since then come
        again, identical; consumers dedupe them, see the module docstring)."""
        for p in list(self._next):
            self.engine.drop(p)
        for table in (self._next, self._since, self._seen):
            table.clear()

    # -- one step -----------------------------------------------------------------------

    def run_once(self, timeout: float = 0.0) -> int:
        """Poll once, process what came, checkpoint if due; the number of records applied."""
        if self._consumer is None:
            self._bp.create_topic(self._events, self._settings.default_partitions)
            self._consumer = self._bp.consumer(
                [self._events], group=f"{self._topics.service}.featurizer"
            )
        consumer = self._consumer
        batch = consumer.poll(self._max_records, timeout)
        self._sync_assignment(consumer)
        now = self._clock.now_ms()
        requests: list[OutRecord] = []
        late: list[OutRecord] = []
        dead: list[OutRecord] = []
        skip: set[int] = set()
        applied = 0
        for record in batch:
            p = record.partition
            expected = self._next.get(p)
            if p in skip or expected is None or record.offset < expected:
                continue  # revoked, or already in the restored state
            if record.offset > expected:  # the group resumed past our checkpoint
                consumer.seek(TopicPartition(self._events, p), expected)
                skip.add(p)
                continue
            self._next[p] = expected + 1
            self._since[p] = self._since.get(p, 0) + 1
            applied += 1
            self._apply(record, now, requests, late, dead)
        self._publish(requests, late, dead)
        self._checkpoint_all(force=False)
        self._idle(now)
        return applied

    def _apply(
        self,
        record: Record,
        now: int,
        requests: list[OutRecord],
        late: list[OutRecord],
        dead: list[OutRecord],
    ) -> None:
        p = record.partition
        try:
            if record.header(rec.KIND_HEADER) == rec.REQUEST_KIND:
                request = decode_request(record.value)
                features = self.engine.features_as_of(p, request.entity, request.event_time)
                enriched = msgspec.structs.replace(request, features=features)
                out = OutRecord(enriched.encode(), enriched.key, (), request.event_time)
                if (size := record_size(out)) > self._bp.max_record_bytes:
                    # The backplane would refuse it, and the whole step with it, for ever.
                    why = (
                        f"the request with its features takes {size} bytes, above the "
                        f"backplane's record limit of {self._bp.max_record_bytes}: send "
                        "fewer rows per request, or raise MODELSTREAM_MAX_RECORD_BYTES"
                    )
                    dead.append(dead_letter_record(record, why, self._bp.max_record_bytes))
                    return
                requests.append(out)
                return
            marker = record.header(rec.WATERMARK_HEADER)
            if marker is not None:
                self.engine.advance(p, int(marker))
                return
            entity, t, values = self._decoder.decode(record)
        except (DecodeError, ValueError) as exc:
            dead.append(dead_letter_record(record, str(exc), self._bp.max_record_bytes))
            return
        self._seen[p] = now
        self.stats.events += 1
        reason = self.engine.process(p, entity, t, values)
        if reason is not None:
            late.append(rec.late_record(record, reason))

    def _publish(
        self, requests: list[OutRecord], late: list[OutRecord], dead: list[OutRecord]
    ) -> None:
        results = [rec.result_record(r) for r in self.engine.drain()]
        for topic, out in (
            (self._topics.features, results),
            (self._topics.late, late),
            (self._topics.requests, requests),
            (self._topics.dead_letter, dead),
        ):
            if out:
                self._bp.produce(topic, out)
        self.stats.requests += len(requests)
        self.stats.late += len(late)
        self.stats.results += len(results)
        self.stats.dead_letters += len(dead)

    # -- partitions, checkpoints, idleness ----------------------------------------------

    def _sync_assignment(self, consumer: Consumer) -> None:
        owned = {tp.partition for tp in consumer.assignment() if tp.topic == self._events}
        for p in set(self._next) - owned:
            self.engine.drop(p)
            self._checkpointer.forget(p)
            for table in (self._next, self._since, self._seen):
                table.pop(p, None)
        for p in sorted(owned - set(self._next)):
            tp = TopicPartition(self._events, p)
            offset = self._checkpointer.restore(p)
            if offset is None:
                consumer.seek_to_beginning([tp])
                offset = consumer.position(tp)
            else:
                consumer.seek(tp, offset)
            self._next[p] = self.resumed_at[p] = offset
            self._seen[p] = self._clock.now_ms()
            log.info("featurizer owns %s[%d] from offset %d", self._events, p, offset)

    def _checkpoint_all(self, *, force: bool) -> None:
        now = self._clock.now_ms()
        due_by_time = now - self._last_checkpoint >= self._interval
        done: dict[TopicPartition, int] = {}
        for p, count in self._since.items():
            if count and (force or due_by_time or count >= self._every):
                self._checkpointer.checkpoint(p, self._next[p])
                self._since[p] = 0
                done[TopicPartition(self._events, p)] = self._next[p]
        if done:
            self.stats.checkpoints += len(done)
            if self._consumer is not None:
                self._consumer.commit(done)
        if due_by_time:
            self._last_checkpoint = now

    def _idle(self, now: int) -> None:
        timeout = self.feature_set.idle_timeout_ms
        marks: list[tuple[int, int]] = []
        leading = max((self.engine.watermark(p) for p in self._next), default=NO_WATERMARK)
        for p, seen in self._seen.items():
            wm = self.engine.watermark(p)
            if wm == NO_WATERMARK or now - seen < timeout:
                continue
            # Follow the partitions that move; alone, assume event time keeps pace with
            # the clock since the last event.
            target = max(leading, wm + (now - seen))
            marks.append((p, target))
            self._seen[p] = now
        for p, target in marks:
            self._bp.produce(self._events, [rec.watermark_record(p, target)])

    @property
    def partitions(self) -> Sequence[int]:
        return sorted(self._next)
