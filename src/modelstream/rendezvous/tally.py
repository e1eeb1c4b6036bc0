"""Counting scores and error scores per model version from ``<service>.scores``.

:class:`ScoreTally` is the :class:`~modelstream.rendezvous.rollout.ErrorSource` of a
rollout run from the command line: a groupless consumer of the scores topic from its end
(``start="latest"``: only what is scored after the tally opened counts) or its start.
Counts are per ``name@version``; a redelivered score (same request id and version) is
counted once while its request id is among the last ``remember`` seen for that version.
Undecodable records are skipped (the scorer wrote them; the monitor reports them).
"""

from __future__ import annotations

from collections import OrderedDict

from modelstream.backplane.port import Backplane, Consumer, StartFrom
from modelstream.errors import DecodeError
from modelstream.models.refs import ModelRef
from modelstream.wire.scores import decode_score
from modelstream.wire.topics import ServiceTopics


class ScoreTally:
    """Scores and errors per model version of one service (see the module docstring)."""

    def __init__(
        self,
        backplane: Backplane,
        service: str,
        *,
        start: StartFrom = "latest",
        remember: int = 100_000,
    ) -> None:
        self.service = service
        topic = ServiceTopics(service).scores
        backplane.create_topic(topic)
        self._consumer: Consumer | None = backplane.consumer([topic], start=start)
        self._remember = remember
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._counts: dict[str, tuple[int, int]] = {}
        self.poll()  # pins a "latest" start now rather than at the first later poll

    def poll(self, timeout: float = 0.0, max_records: int = 5000) -> int:
        """Read what is new (waiting at most ``timeout`` s for the first); returns how many."""
        if self._consumer is None:
            return 0
        read = 0
        while batch := self._consumer.poll(max_records, timeout):
            read += len(batch)
            timeout = 0.0
            for record in batch:
                try:
                    score = decode_score(record.value)
                except DecodeError:
                    continue
                key = (score.request_id, score.ref)
                if key in self._seen:
                    continue
                self._seen[key] = None
                if len(self._seen) > self._remember:
                    self._seen.popitem(last=False)
                scored, errors = self._counts.get(score.ref, (0, 0))
                self._counts[score.ref] = (scored + 1, errors + (0 if score.ok else 1))
        return read

    def counts(self, service: str, ref: ModelRef) -> tuple[int, int]:
        """``(scored, errors)`` of ``ref`` counted so far (``(0, 0)`` for another service)."""
        if service != self.service:
            return (0, 0)
        return self._counts.get(str(ref), (0, 0))

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def __enter__(self) -> ScoreTally:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
