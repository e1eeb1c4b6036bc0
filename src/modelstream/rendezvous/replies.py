"""Replies a crash may have lost: found after a takeover, and sent again.

Why: the rendezvous produces an answer on ``results`` and then, in a second call, on the
request's ``reply_to``. A member killed between the two calls leaves an answer that is
durable but never reached its caller. The next owner of the partition reads the answer
back and does not decide the request again (so it is never answered twice), and without
this module the caller would wait in vain: a gateway would answer 504 at the deadline for
a request a model did answer.

Contract (:class:`LostReplies`, owned by one rendezvous loop, one thread):

* :meth:`~LostReplies.remember` takes the answers a takeover read back that a
  redelivered request may have (:attr:`.answered.Answered.recent`).
* :meth:`~LostReplies.on_request` is told of every request read. A request whose answer
  was remembered, and that has a ``reply_to``, is noted; one without ``reply_to`` is
  dropped from memory (its answer is on ``results``, where its caller reads it).
* :meth:`~LostReplies.resend` reads each noted ``reply_to`` back from the earliest noted
  answer's timestamp (a reply carries its answer's timestamp) and produces, unchanged
  (value, key, headers, timestamp), the answers whose reply is not there. So a caller
  gets its answer once, even across a crash between the two calls. It is called at every
  step and acts once the redelivered requests are read (a step noted none), or
  ``HOLD_S`` after the first was noted: one read of a reply topic covers them all, and
  the loop, which decides the other requests meanwhile, is held up once.
* A ``reply_to`` that does not exist is given up, with a warning: no one can be waiting
  on it. Any other backplane failure propagates to the loop, which takes its partitions
  over again and so comes back here with the same answers.
* :meth:`~LostReplies.forget` drops the answers of partitions handed over: their next
  owner reads them back itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping

from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord, Record
from modelstream.errors import TopicNotFound
from modelstream.rendezvous.answered import records_since
from modelstream.wire.requests import InferenceRequest

log = logging.getLogger(__name__)

HOLD_S = 0.5  # the longest a noted answer waits for others to be checked with it


class LostReplies:
    """The answers read back after a takeover whose replies may be missing."""

    def __init__(self, backplane: Backplane, *, timeout_s: float = 10.0) -> None:
        self._bp = backplane
        self._timeout_s = timeout_s
        self._recent: dict[str, Record] = {}
        self._noted: dict[str, list[Record]] = {}  # reply_to -> answers to check there
        self._first_noted = 0.0  # time.monotonic() when the first of them was noted
        self._fresh = False  # noted one since the last resend call

    def remember(self, recent: Mapping[str, Record]) -> None:
        """Keep ``recent`` (request id -> its answer on ``results``) until the requests
        are read again."""
        self._recent.update(recent)

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop the answers of ``partitions`` (same numbers on ``results`` and
        ``requests``)."""
        gone = set(partitions)
        if gone and self._recent:
            self._recent = {k: r for k, r in self._recent.items() if r.partition not in gone}

    def on_request(self, request: InferenceRequest) -> None:
        """Note ``request`` if its answer was read back and it wants a reply."""
        if not self._recent:  # the steady state: one falsy test per request
            return
        answer = self._recent.pop(request.id, None)
        if answer is not None and request.reply_to:
            if not self._noted:
                self._first_noted = time.monotonic()
            self._noted.setdefault(request.reply_to, []).append(answer)
            self._fresh = True

    def resend(self) -> int:
        """Send the noted answers whose reply is missing; how many were sent."""
        fresh, self._fresh = self._fresh, False
        if not self._noted or (fresh and time.monotonic() - self._first_noted < HOLD_S):
            return 0
        noted, self._noted = self._noted, {}
        began = time.monotonic()
        sent = 0
        for topic, answers in noted.items():
            try:
                there = _keys_since(
                    self._bp, topic, min(a.timestamp for a in answers), self._timeout_s
                )
            except TopicNotFound:
                log.warning(
                    "%d answers were not sent to %s, which no longer exists", len(answers), topic
                )
                continue
            missing = [
                OutRecord(a.value, a.key, a.headers, a.timestamp)
                for a in answers
                if a.key not in there
            ]
            if missing:
                self._bp.produce(topic, missing)
                log.info(
                    "%d of %d answers sent again to %s, whose replies were lost in a crash "
                    "(checked in %.2f s)",
                    len(missing),
                    len(answers),
                    topic,
                    time.monotonic() - began,
                )
            sent += len(missing)
        return sent


def _keys_since(backplane: Backplane, topic: str, since_ms: int, timeout_s: float) -> set[bytes]:
    """The keys of ``topic``'s records stamped at or after ``since_ms``, read to the ends
    as they were on the call (bounded by ``timeout_s``); ``TopicNotFound`` first."""
    since = {p.partition: since_ms for p in backplane.partitions(topic)}
    records = records_since(backplane, topic, since, timeout_s)
    return {r.key for r in records if r.key is not None}
