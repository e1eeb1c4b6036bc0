"""The rendezvous's state, without I/O: open mailboxes, early scores, timers, what was answered.

:class:`MailboxBook` is a deterministic state machine driven by the server (or a test
with a manual clock): feed it requests and scores with :meth:`on_request` and
:meth:`on_score`, call :meth:`tick` at :meth:`next_wakeup`, and produce the
:class:`Emit` records it returns. The invariants it keeps:

* **At most one answer per request id.** A mailbox emits its answer once, when it is
  decided; a duplicate request (same id) is ignored while its mailbox is open, while it
  is kept for late answers, and for ``answered_ttl_ms`` after that (the *answered* set,
  which the server also fills from the ``results`` topic after a crash or rebalance).
* **At least one answer by the deadline.** Every open mailbox has a timer at its
  deadline minus ``deadline_margin_ms``; when it fires the decision is final: the policy's
  best acceptable answer, else the fallback (see :mod:`modelstream.rendezvous.outcome`).
  A request whose deadline has already passed on arrival is decided at once.
* **Nothing needed is committed away.** :meth:`held_offsets` is, per partition, the
  lowest offset of a record an undecided mailbox (or an early score) still needs; the
  server never commits past it, so after a crash those records are read again.

Late answers (scores arriving after the decision) are collected for ``late_window_ms``
after the deadline; if any arrived, a second record for the request is emitted with
``late`` filled and ``Emit.late`` set (the server marks it with the
:data:`~modelstream.rendezvous.outcome.LATE_HEADER` header and never sends it to
``reply_to``). The first record per request id on ``results`` is the answer.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

import msgspec

from modelstream.backplane.records import TopicPartition
from modelstream.models.deployment import Deployment
from modelstream.rendezvous.mailbox import Added, Mailbox
from modelstream.rendezvous.outcome import answer_result, fallback_result
from modelstream.rendezvous.policies import Decision, RendezvousPolicy
from modelstream.wire.requests import InferenceRequest
from modelstream.wire.results import Result
from modelstream.wire.scores import Score


@dataclass(frozen=True, slots=True)
class Emit:
    """A record to produce on ``results`` (and on ``reply_to`` unless ``late``).

    ``partition`` is that of the request's record: its result goes to the same partition
    number of ``results`` (which has the request topic's count), where a member taking
    the partition over reads back what was answered, whichever partitioner placed the
    request.
    """

    result: Result
    reply_to: str | None
    partition: int
    late: bool = False


class _Timer(Enum):
    CHECK = 0  # a policy's next_check: re-evaluate
    FINAL = 1  # the deadline: decide now, with the fallback if need be
    EXPIRE = 2  # stop collecting late answers of a decided request


@dataclass(slots=True)
class _Held:
    score: Score
    tp: TopicPartition
    offset: int
    arrived_at: int


class MailboxBook:
    """Mailboxes of the requests of the partitions this rendezvous member owns."""

    def __init__(
        self,
        service: str,
        deployment_source: Callable[[], Deployment | None],
        policies: Mapping[str, RendezvousPolicy],
        *,
        deadline_margin_ms: int = 5,
        late_window_ms: int = 1_000,
        early_ttl_ms: int = 30_000,
        max_early: int = 10_000,
        answered_ttl_ms: int = 15 * 60_000,
    ) -> None:
        self.service = service
        self._deployment = deployment_source
        self._policies = policies
        self._margin = deadline_margin_ms
        self._late_window = late_window_ms
        self._early_ttl = early_ttl_ms
        self._max_early = max_early
        self._answered_ttl = answered_ttl_ms
        self.open: dict[str, Mailbox] = {}
        self._closed: dict[str, tuple[Mailbox, Result]] = {}
        self._early: OrderedDict[str, list[_Held]] = OrderedDict()
        self._answered: OrderedDict[str, int] = OrderedDict()  # id -> when, oldest first
        # (when, seq, _Timer value, request id): plain values only, so that once the
        # collector has seen an entry it stops tracking it (see wire/tensors.py, Tensor).
        self._timers: list[tuple[int, int, int, str]] = []
        self._seq = itertools.count()

    # -- inputs -------------------------------------------------------------------------

    def is_answered(self, request_id: str) -> bool:
        return request_id in self._answered or request_id in self._closed

    def mark_answered(self, request_id: str, when: int) -> None:
        """Record that ``request_id`` was answered (e.g. seen on ``results`` after a crash)."""
        if request_id not in self.open:
            self._answered[request_id] = when
            self._answered.move_to_end(request_id)

    def on_request(
        self, request: InferenceRequest, tp: TopicPartition, offset: int, now: int
    ) -> list[Emit]:
        """Open a mailbox for ``request`` (ignored if already open or answered)."""
        if request.id in self.open or self.is_answered(request.id):
            return []
        mailbox = Mailbox(request, now, [(tp, offset)], tp.partition)
        self.open[request.id] = mailbox
        for held in self._early.pop(request.id, []):
            if mailbox.add(held.score, held.arrived_at) is Added.ANSWER:
                mailbox.held.append((held.tp, held.offset))
        self._schedule(max(now, request.deadline - self._margin), _Timer.FINAL, request.id)
        return self._evaluate(mailbox, now)

    def on_score(self, score: Score, tp: TopicPartition, offset: int, now: int) -> list[Emit]:
        """Add ``score`` to its mailbox; hold it if its request has not arrived yet."""
        rid = score.request_id
        mailbox = self.open.get(rid)
        if mailbox is not None:
            if mailbox.add(score, now) is Added.ANSWER:
                mailbox.held.append((tp, offset))
                return self._evaluate(mailbox, now)
            return []
        closed = self._closed.get(rid)
        if closed is not None:
            closed[0].add(score, now)  # a late answer, kept for the late record
            return []
        if rid in self._answered:
            return []  # answered before a restart: too late to record
        self._early.setdefault(rid, []).append(_Held(score, tp, offset, now))
        while len(self._early) > self._max_early:
            self._early.popitem(last=False)  # bounded: the oldest early scores go first
        return []

    # -- time ---------------------------------------------------------------------------

    def next_wakeup(self) -> int | None:
        """The earliest time :meth:`tick` has work to do (``None``: nothing scheduled)."""
        return self._timers[0][0] if self._timers else None

    def tick(self, now: int) -> list[Emit]:
        """Fire every timer due at ``now``: re-checks, final decisions, late records."""
        out: list[Emit] = []
        while self._timers and self._timers[0][0] <= now:
            _, _, value, rid = heapq.heappop(self._timers)
            kind = _Timer(value)
            if kind is _Timer.EXPIRE:
                out.extend(self._expire(rid, now))
                continue
            mailbox = self.open.get(rid)
            if mailbox is not None:
                out.extend(self._evaluate(mailbox, now, final=kind is _Timer.FINAL))
        self._prune(now)
        return out

    def held_offsets(self) -> dict[TopicPartition, int]:
        """Per partition, the lowest offset still needed by an undecided mailbox or early score."""
        low: dict[TopicPartition, int] = {}
        for mailbox in self.open.values():
            for tp, offset in mailbox.held:
                low[tp] = min(offset, low.get(tp, offset))
        for holds in self._early.values():
            for held in holds:
                low[held.tp] = min(held.offset, low.get(held.tp, held.offset))
        return low

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget the state of ``partitions`` (revoked: their new owner answers them)."""
        for rid in [r for r, m in self.open.items() if m.partition in partitions]:
            del self.open[rid]
        for rid in [r for r, (m, _) in self._closed.items() if m.partition in partitions]:
            del self._closed[rid]
        for rid in [r for r, h in self._early.items() if h[0].tp.partition in partitions]:
            del self._early[rid]

    # -- internals ----------------------------------------------------------------------

    def _schedule(self, at: int, kind: _Timer, rid: str) -> None:
        heapq.heappush(self._timers, (at, next(self._seq), kind.value, rid))

    def _evaluate(self, mailbox: Mailbox, now: int, *, final: bool = False) -> list[Emit]:
        final = final or now >= mailbox.deadline - self._margin
        request = mailbox.request
        deployment = self._deployment()
        if request.target is not None:
            policy: RendezvousPolicy | None = self._policies["target"]
        elif deployment is not None:
            policy = self._policies.get(deployment.policy.kind.value)
        else:
            policy = None  # no deployment yet: only the deadline decides
        name = policy.name if policy is not None else "none"
        decision: Decision | None = None
        if policy is not None:
            # A final call sees the deadline as "now", so every wait counts as over.
            at = max(now, mailbox.deadline) if final else now
            decision = policy.decide(mailbox, deployment or Deployment(self.service, ()), at)
        if decision is not None and decision.model is not None:
            result = answer_result(mailbox, decision, name, now, deployment)
            return [self._close(mailbox, result, now)]
        if decision is not None or final:
            reason = decision.reason if decision is not None else ""
            result = fallback_result(mailbox, name, now, deployment, reason, final=final)
            return [self._close(mailbox, result, now)]
        if policy is not None and deployment is not None:
            check = policy.next_check(mailbox, deployment, now)
            if check is not None and check < mailbox.deadline - self._margin:
                self._schedule(check, _Timer.CHECK, request.id)
        return []

    def _close(self, mailbox: Mailbox, result: Result, now: int) -> Emit:
        mailbox.close(now)
        del self.open[mailbox.id]
        self._closed[mailbox.id] = (mailbox, result)
        self._schedule(max(now, mailbox.deadline) + self._late_window, _Timer.EXPIRE, mailbox.id)
        return Emit(result, mailbox.request.reply_to, mailbox.partition)

    def _expire(self, rid: str, now: int) -> list[Emit]:
        closed = self._closed.pop(rid, None)
        if closed is None:
            return []
        mailbox, result = closed
        self.mark_answered(rid, now)
        late = mailbox.late_refs()
        if not late:
            return []
        return [
            Emit(msgspec.structs.replace(result, late=late), None, mailbox.partition, late=True)
        ]

    def _prune(self, now: int) -> None:
        while self._answered:
            rid, when = next(iter(self._answered.items()))
            if when >= now - self._answered_ttl:
                break
            del self._answered[rid]
        while self._early:
            rid, holds = next(iter(self._early.items()))
            if holds[0].arrived_at >= now - self._early_ttl:
                break
            del self._early[rid]
