"""A mailbox per open request: the request, its deadline, and the answers that arrived.

Invariants:

* The first score per model version (``name@version``) wins. A second score of the same
  version (a redelivery after a scorer crash, a duplicate produce) is ignored, so a
  policy never sees one model twice and never changes its mind because of a replay.
* A mailbox is decided at most once (:meth:`Mailbox.close`). Scores arriving after the
  decision are kept apart as *late* answers: recorded for comparison, never chosen.
* The mailbox remembers the backplane offsets of the records it holds (its request and
  its scores) until it is decided, so the rendezvous never commits past a record whose
  request is still unanswered.
"""

from __future__ import annotations

from enum import Enum

import msgspec

from modelstream.backplane.records import TopicPartition
from modelstream.models.deployment import LiveModel
from modelstream.models.refs import ModelRef
from modelstream.wire.requests import InferenceRequest
from modelstream.wire.scores import Score


class Answer(msgspec.Struct, frozen=True, gc=False):
    """One model version's score as the mailbox received it.

    A frozen ``Struct`` left out of the garbage collector, like the records it holds
    (:class:`~modelstream.wire.scores.Score`): a decided mailbox is kept for late answers
    until a late window (1 s by default) after its deadline, so thousands of answers can
    be alive at once, and a tracked object would add to every collection's walk. It holds
    no container, so it can be part of no reference cycle.
    """

    score: Score
    arrived_at: int  # ms, the rendezvous's clock
    seq: int  # arrival order within the mailbox, 0 first

    @property
    def ok(self) -> bool:
        return self.score.ok


class Added(Enum):
    """What :meth:`Mailbox.add` did with a score."""

    ANSWER = "answer"  # a new answer, before the decision
    LATE = "late"  # a new answer, after the decision (recorded, never chosen)
    DUPLICATE = "duplicate"  # this model version had already answered: ignored


class Mailbox:
    """The state of one request at the rendezvous (see the module docstring)."""

    __slots__ = (
        "_answers",
        "_late",
        "_seq",
        "decided_at",
        "held",
        "opened_at",
        "partition",
        "request",
    )

    def __init__(
        self,
        request: InferenceRequest,
        opened_at: int,
        held: list[tuple[TopicPartition, int]] | None = None,
        partition: int = 0,
    ) -> None:
        self.request = request
        self.partition = partition  # of the request record (and of its scores)
        self.opened_at = opened_at
        self.decided_at: int | None = None
        # Offsets of records this undecided mailbox depends on; emptied on close.
        self.held: list[tuple[TopicPartition, int]] = list(held or [])
        self._answers: dict[str, Answer] = {}
        self._late: dict[str, Answer] = {}
        self._seq = 0

    @property
    def id(self) -> str:
        return self.request.id

    @property
    def deadline(self) -> int:
        return self.request.deadline

    @property
    def started_at(self) -> int:
        """When the request started, for per-model waits: its ``sent_at``, else its arrival.

        ``sent_at`` is preferred so a request redelivered after a crash keeps its original
        waits instead of getting fresh ones.
        """
        return self.request.sent_at if self.request.sent_at is not None else self.opened_at

    @property
    def decided(self) -> bool:
        return self.decided_at is not None

    def wait_until(self, live: LiveModel) -> int:
        """When waiting longer for ``live`` stops being useful (capped at the deadline)."""
        if live.wait_ms is None:
            return self.deadline
        return min(self.deadline, self.started_at + live.wait_ms)

    def add(self, score: Score, now: int) -> Added:
        """Record ``score``; the first score per model version wins (see module docstring)."""
        ref = score.ref
        if ref in self._answers or ref in self._late:
            return Added.DUPLICATE
        answer = Answer(score, now, self._seq)
        self._seq += 1
        if self.decided:
            self._late[ref] = answer
            return Added.LATE
        self._answers[ref] = answer
        return Added.ANSWER

    def answer_for(self, ref: ModelRef) -> Answer | None:
        """The in-time answer of exactly this model version, if it arrived."""
        return self._answers.get(str(ref))

    # Both dicts keep insertion order, and answers are only ever inserted, in arrival
    # order (``seq``): no sort is needed to list them in that order.

    def answers(self) -> list[Answer]:
        """In-time answers (errors included), in arrival order."""
        return list(self._answers.values())

    def answered_refs(self) -> tuple[str, ...]:
        """Refs of the in-time answers, in arrival order."""
        return tuple(self._answers)

    def late_refs(self) -> tuple[str, ...]:
        """Refs of the answers that came after the decision, in arrival order."""
        return tuple(self._late)

    def close(self, now: int) -> None:
        """Mark the mailbox decided at ``now``; it then holds no offsets. Idempotent."""
        if self.decided_at is None:
            self.decided_at = now
        self.held.clear()
