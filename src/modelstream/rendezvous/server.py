"""The rendezvous role: one answer per request, by its deadline, chosen by the service's policy.

:class:`Rendezvous` is a member of the consumer group ``<service>.rendezvous`` reading
``<service>.requests`` and ``<service>.scores``. Both topics (and ``results``) have the
same partition count and are keyed by request id, so partition ``p`` of each holds the
same requests and goes to the same member: a request and all its scores meet in one
process. The decision logic lives in :class:`~modelstream.rendezvous.book.MailboxBook`;
this module does the I/O around it.

**The exactly-once-answer invariant.** Every request read gets exactly one answer record
on ``results`` (the first record per request id there; see ``book`` for the optional
second, *late* record, marked with the ``x-modelstream-late`` header and never sent to
``reply_to``). It rests on three rules:

1. *By the deadline*: the loop never sleeps past the next timer of the book, and the
   final decision is taken ``deadline_margin_ms`` before the deadline (by default the
   settings' ``answer_margin()``: 5 ms, 20 ms on Kafka), so the answer can still travel back.
2. *Never lost*: offsets are committed only after the answers they cover are durable
   (``produce`` returned), and never past a record an open mailbox still needs; a crash
   makes the group redeliver those records, and so does a rebalance: every partition the
   member takes over (even one given back to it) is read from the committed offset.
   While records flow, commits come at most every ``Settings.commit_interval_ms``
   (:class:`~modelstream.backplane.cadence.CommitCadence`; at once when a poll brings
   nothing, and on stop): a crash re-reads that much more, which rule 3 makes harmless.
3. *Never twice*: a redelivered request is recognised (open mailbox, recently decided,
   or read back from ``results`` of the same partition when the partition is assigned,
   see :mod:`modelstream.rendezvous.answered`) and ignored. Its answer is sent again
   to its ``reply_to`` only if the reply is not there: answers go to ``results`` first,
   so a crash between the two may have lost it (see :mod:`modelstream.rendezvous.replies`).

The one window left is a rebalance racing a decision (the old owner produces an answer
just after the new owner read ``results`` back); it is as narrow as the backplane's
rebalance notice, and disappears with a single member per partition.

Undecodable records go to ``<service>.dead-letter`` with the reason; processing goes on.

**A backplane that goes away** (``BackplaneUnavailable``: a broker down or unreachable;
or another ``BackplaneError`` such as a commit refused after the group moved on) does
not stop the role: the member forgets every partition it owns, as if it had just
restarted (answers decided but not yet durable are dropped: their requests were not
committed, so they are read again and decided again), waits with a growing backoff, and
takes its partitions over afresh from the committed offsets, reading ``results`` back so
nothing already answered is answered again.
The deployment in force is read at every decision, so a policy switch applies at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from modelstream.backplane.cadence import CommitCadence
from modelstream.backplane.port import Backplane, Consumer
from modelstream.backplane.records import OutRecord, Record, TopicPartition, record_size
from modelstream.backplane.retry import Backoff
from modelstream.clock import Clock, SystemClock
from modelstream.errors import (
    BackplaneError,
    ConfigurationError,
    ConsumerClosed,
    DecodeError,
    ModelstreamError,
)
from modelstream.models.deployment import Deployment
from modelstream.rendezvous.answered import read_answered
from modelstream.rendezvous.book import Emit, MailboxBook
from modelstream.rendezvous.inputs import DeploymentSource, FollowedDeployment
from modelstream.rendezvous.outcome import LATE_HEADER, too_large
from modelstream.rendezvous.policies import QualitySource, standard_policies
from modelstream.rendezvous.replies import LostReplies
from modelstream.settings import Settings
from modelstream.threads import ended
from modelstream.wire.copartition import ensure_copartitioned
from modelstream.wire.deadletter import send_to_dead_letter
from modelstream.wire.requests import decode_request
from modelstream.wire.scores import decode_score
from modelstream.wire.topics import ServiceTopics

log = logging.getLogger(__name__)


class Rendezvous:
    """The rendezvous of one service (see the module docstring for its invariants)."""

    def __init__(
        self,
        backplane: Backplane,
        settings: Settings,
        service: str,
        *,
        clock: Clock | None = None,
        deployment_source: DeploymentSource | None = None,
        quality: QualitySource | None = None,
        deadline_margin_ms: int | None = None,
        late_window_ms: int = 1_000,
        answered_lookback_ms: int = 15 * 60_000,
        poll_interval_s: float = 0.05,
    ) -> None:
        self.topics = ServiceTopics(service)
        self._bp = backplane
        self._settings = settings
        self._clock: Clock = clock or SystemClock()
        self._followed = (
            FollowedDeployment(backplane, service) if deployment_source is None else None
        )
        self._deployment: DeploymentSource = deployment_source or self._followed or (lambda: None)
        self._lookback = answered_lookback_ms
        self._poll = poll_interval_s
        self.book = MailboxBook(
            service,
            self._deployment,
            standard_policies(quality),
            deadline_margin_ms=(
                settings.answer_margin() if deadline_margin_ms is None else deadline_margin_ms
            ),
            late_window_ms=late_window_ms,
            answered_ttl_ms=answered_lookback_ms,
        )
        self.stats: Counter[str] = Counter()
        self.failure: BaseException | None = None
        self._owned: set[int] = set()
        # Partitions whose mailboxes this member dropped (revoked, or after a failure):
        # when one is taken over again, it is read again from the committed offset.
        self._dropped: set[int] = set()
        self._committed: dict[TopicPartition, int] = {}
        self._replies = LostReplies(backplane)
        self._cadence = CommitCadence(settings.commit_interval_ms)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None
        self._commit_on_stop = True

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Join the group and answer requests on a background thread until :meth:`stop`."""
        if self._thread is not None:
            raise ConfigurationError("this rendezvous is already started; create a new one")
        began = time.monotonic()
        if self._followed is not None:
            self._followed.start()
        deployment = self._deployment()
        partitions = deployment.partitions if deployment is not None else None
        ensure_copartitioned(self._bp, self.topics, partitions or self._settings.default_partitions)
        group = f"{self.topics.service}.rendezvous"
        self._consumer = self._bp.consumer(
            [self.topics.requests, self.topics.scores], group=group, start="earliest"
        )
        # With the "takes over" line, this times a failover: the group's rebalance lies
        # between the two.
        log.info(
            "rendezvous of %s joins group %s (deployment and topics read in %.1f s)",
            self.topics.service,
            group,
            time.monotonic() - began,
        )
        self._thread = threading.Thread(
            target=self._run, name=f"rendezvous-{self.topics.service}", daemon=True
        )
        self._thread.start()

    def stop(self, *, commit: bool = True, timeout: float = 10.0) -> None:
        """Stop, commit what was answered (unless ``commit`` is false) and leave the group.

        Open mailboxes are not answered: their records are not committed, so the group's
        next owner of their partitions reads and answers them.
        """
        self._commit_on_stop = commit
        self._stop.set()
        if self._followed is not None:
            self._followed.stop()
        # A thread still polling keeps its consumer (see modelstream.threads).
        stopped = ended(self._thread, timeout, f"the rendezvous of {self.topics.service}")
        if stopped and self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    # -- the loop -------------------------------------------------------------------------

    def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        backoff = Backoff(self._settings.retry_max_s())
        try:
            while not self._stop.is_set():
                try:
                    self._step(consumer)
                except BackplaneError as exc:
                    if isinstance(exc, ConsumerClosed):
                        raise
                    self.stats["backplane_retries"] += 1
                    wait = backoff.failed()
                    log.warning(
                        "rendezvous of %s: %s; retrying in %.1f s", self.topics.service, exc, wait
                    )
                    self._forget_partitions()
                    self._stop.wait(wait)
                else:
                    backoff.succeeded()
            if self._commit_on_stop:
                self._commit(consumer)
        except (ModelstreamError, OSError) as exc:  # logged, kept for the owner to see
            log.exception("rendezvous of %s stopped", self.topics.service)
            self.failure = exc

    def _step(self, consumer: Consumer) -> None:
        wake = self.book.next_wakeup()
        timeout = self._poll
        if wake is not None:
            timeout = min(timeout, max(0.0, (wake - self._clock.now_ms()) / 1000))
        records = consumer.poll(max_records=500, timeout=timeout)
        rewound = self._sync_assignment(consumer)
        emits: list[Emit] = []
        for record in records:
            # A partition just rewound is read again from its committed offset.
            if record.partition in self._owned and record.partition not in rewound:
                emits.extend(self._handle(record))
        emits.extend(self.book.tick(self._clock.now_ms()))
        self.stats["replies_resent"] += self._replies.resend()
        if emits:
            self._produce(emits)
        if self._cadence.due(idle=not records):
            self._commit(consumer)

    def _forget_partitions(self) -> None:
        """Drop every owned partition's state (after a failure mid-step, records polled
        may not have reached the book, and answers decided may not be durable): the next
        step takes every partition over again from its committed offset."""
        self.book.drop_partitions(self._owned)
        self._replies.forget(self._owned)
        self._dropped |= self._owned
        self._owned = set()
        self._committed = {}

    def _sync_assignment(self, consumer: Consumer) -> set[int]:
        """Follow the consumer's assignment; return the partitions rewound.

        A partition taken over whose mailboxes this member dropped is read again from the
        group's committed offset, never from where the consumer happens to be: the commit
        never passed a record those mailboxes needed. That is the case after a failure,
        and for a partition that comes back to this member after a revocation: on Kafka a
        rebalance revokes every partition and assigns the member's share polls later, and
        the consumer then goes on from where it was, past the requests of the mailboxes
        dropped in between. (A partition new to this member starts at the committed
        offset anyway.)
        """
        owned = {tp.partition for tp in consumer.assignment() if tp.topic == self.topics.requests}
        gone, new = self._owned - owned, owned - self._owned
        rewound = new & self._dropped
        if gone:
            self.book.drop_partitions(gone)
            self._replies.forget(gone)
            self._dropped |= gone
            self._committed = {tp: o for tp, o in self._committed.items() if tp.partition in owned}
        if new:
            tps = [TopicPartition(self.topics.requests, p) for p in new]
            committed = {tp.partition: off for tp, off in consumer.committed(tps).items()}
            self._dropped -= new
            if rewound:
                self._seek_committed(consumer, rewound)
            now = self._clock.now_ms()
            began = time.monotonic()
            answered = read_answered(
                self._bp,
                results_topic=self.topics.results,
                requests_topic=self.topics.requests,
                partitions=new,
                committed=committed,
                now_ms=now,
                lookback_ms=self._lookback,
            )
            for rid in answered.ids:
                self.book.mark_answered(rid, now)
            self._replies.remember(answered.recent)
            self.stats["rebuilt_answered"] += len(answered.ids)
            log.info(
                "rendezvous of %s takes over partitions %s (read again from the commit: %s); "
                "%d requests there already answered (read back in %.2f s)",
                self.topics.service,
                sorted(new),
                sorted(rewound),
                len(answered.ids),
                time.monotonic() - began,
            )
        if gone:
            log.info("rendezvous of %s hands over partitions %s", self.topics.service, sorted(gone))
        self._owned = owned
        return rewound

    def _seek_committed(self, consumer: Consumer, partitions: set[int]) -> None:
        """Move ``partitions`` of requests and scores back to the group's committed offsets."""
        tps = [
            TopicPartition(topic, p)
            for topic in (self.topics.requests, self.topics.scores)
            for p in partitions
        ]
        assigned = consumer.assignment()
        for tp, offset in consumer.committed(tps).items():
            if tp not in assigned:
                continue
            if offset is None:
                consumer.seek_to_beginning([tp])
            else:
                consumer.seek(tp, offset)

    def _handle(self, record: Record) -> list[Emit]:
        now = self._clock.now_ms()
        tp = record.topic_partition
        try:
            if record.topic == self.topics.requests:
                request = decode_request(record.value)
                if request.service != self.topics.service:
                    raise DecodeError(
                        f"request for service {request.service!r} on {record.topic!r}"
                    )
                self.stats["requests"] += 1
                self._replies.on_request(request)
                return self.book.on_request(request, tp, record.offset, now)
            score = decode_score(record.value)
            self.stats["scores"] += 1
            return self.book.on_score(score, tp, record.offset, now)
        except DecodeError as exc:
            self.stats["dead_letters"] += 1
            send_to_dead_letter(self._bp, self.topics.dead_letter, record, str(exc))
            return []

    def _produce(self, emits: list[Emit]) -> None:
        results: list[OutRecord] = []
        replies: dict[str, list[OutRecord]] = {}
        limit = self._bp.max_record_bytes
        for emit in emits:
            result = emit.result
            headers = ((LATE_HEADER, b"1"),) if emit.late else ()
            key, at, partition = result.request_id.encode(), result.decided_at, emit.partition
            out = OutRecord(result.encode(), key, headers, at, partition)
            if (size := record_size(out)) > limit:
                # Refused by the backplane, it would be retried forever: the request is
                # answered with what went wrong instead.
                result = too_large(result, size, limit)
                out = OutRecord(result.encode(), key, headers, at, partition)
            results.append(out)
            if emit.late:
                self.stats["late_records"] += 1
                continue
            self.stats[
                "fallbacks" if result.fallback else "errors" if result.error else "answers"
            ] += 1
            if emit.reply_to:
                # Placed by its key: a return address has a partition count of its own.
                reply = OutRecord(out.value, key, headers, at)
                replies.setdefault(emit.reply_to, []).append(reply)
        # results first: it is what a restarted member reads back to avoid a second answer.
        self._bp.produce(self.topics.results, results)
        for topic, records in replies.items():
            self._bp.produce(topic, records)

    def _commit(self, consumer: Consumer) -> None:
        """Commit, per owned partition, up to the first record an open mailbox still needs."""
        held = self.book.held_offsets()
        offsets: dict[TopicPartition, int] = {}
        for tp in consumer.assignment():
            if tp.partition not in self._owned:
                continue
            offset = held.get(tp, consumer.position(tp))
            if self._committed.get(tp) != offset:
                offsets[tp] = offset
        if offsets:
            consumer.commit(offsets)
            self._committed.update(offsets)
        self._cadence.committed()

    def deployment(self) -> Deployment | None:
        """The deployment in force now (the one the next decision uses)."""
        return self._deployment()

    @property
    def owned(self) -> frozenset[int]:
        """The partitions of ``requests`` this member holds mailboxes for now."""
        return frozenset(self._owned)

    def wait_until_assigned(self, timeout: float = 10.0) -> bool:
        """Block until this member owns at least one partition of ``requests`` (on Kafka, a
        group join takes seconds); whether it does within ``timeout`` seconds. A member
        beyond the partition count never does: it is a standby."""
        give_up = time.monotonic() + timeout
        while not self._owned and time.monotonic() < give_up and self.failure is None:
            time.sleep(0.01)
        return bool(self._owned)
