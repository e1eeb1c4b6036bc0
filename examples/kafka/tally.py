"""What the service said, read back from its topics while the example runs.

:class:`Tally` reads ``results``, ``scores``, ``model-events`` and the example's own
reply topic from the beginning, with no consumer group (it never disturbs the roles),
on a thread of its own until :meth:`Tally.stop`. It keeps:

* per request id, how many *answers* ``results`` holds (the first record per id is the
  answer; records with the header ``x-modelstream-late`` are late-answer notes and are
  not counted) and the first one;
* per request id and model, which scorer processes scored it, on which partition, when
  (the header ``x-modelstream-scorer`` names the scorer instance, ``host-pid-suffix``);
* the scorer instances that loaded a model (``swapped`` events on ``model-events``), and
  the trainer's events there (``retrain_published|rejected|skipped``, with the reason);
* per request id, how many replies came back on the reply topic.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from modelstream.backplane.port import Backplane
from modelstream.backplane.records import Record
from modelstream.errors import DecodeError
from modelstream.scoring.events import decode_model_event
from modelstream.wire.results import Result, decode_result
from modelstream.wire.scores import decode_score
from modelstream.wire.topics import ServiceTopics

LATE_HEADER = "x-modelstream-late"
SCORER_HEADER = "x-modelstream-scorer"
T = TypeVar("T")


def scorer_pid(scorer_id: str) -> int | None:
    """The pid inside a scorer id ``host-pid-suffix`` (the host name may hold dashes)."""
    parts = scorer_id.rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


@dataclass(frozen=True)
class ScoreSeen:
    scorer: str
    partition: int
    scored_at: int
    ok: bool


class Tally:
    """A live, thread-safe count of the answers and scores of one service."""

    def __init__(self, backplane: Backplane, service: str, reply_topic: str) -> None:
        self.topics = ServiceTopics(service)
        self.reply_topic = reply_topic
        self._consumer = backplane.consumer(
            [self.topics.results, self.topics.scores, self.topics.model_events, reply_topic],
            start="earliest",
        )
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.answers: Counter[str] = Counter()
        self.first: dict[str, Result] = {}
        self.late_notes = 0
        self.replies: Counter[str] = Counter()
        self.scores: dict[str, dict[str, list[ScoreSeen]]] = defaultdict(lambda: defaultdict(list))
        self.loaded: dict[str, set[str]] = defaultdict(set)  # model -> scorer ids
        self.trainer_events: list[tuple[str, str | None, int]] = []  # (event, why, at ms)
        self.undecodable = 0
        self._thread = threading.Thread(target=self._run, name="tally", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            records = self._consumer.poll(max_records=2000, timeout=0.2)
            with self._lock:
                for record in records:
                    try:
                        self._take(record)
                    except DecodeError:
                        self.undecodable += 1

    def _take(self, record: Record) -> None:
        if record.topic == self.topics.results:
            if record.header(LATE_HEADER) is not None:
                self.late_notes += 1
                return
            result = decode_result(record.value)
            self.answers[result.request_id] += 1
            self.first.setdefault(result.request_id, result)
        elif record.topic == self.topics.scores:
            score = decode_score(record.value)
            scorer = (record.header(SCORER_HEADER) or b"?").decode()
            seen = ScoreSeen(scorer, record.partition, score.scored_at, score.ok)
            self.scores[score.request_id][score.model].append(seen)
        elif record.topic == self.topics.model_events:
            event = decode_model_event(record.value)
            if event.event == "swapped":
                self.loaded[event.model].add(event.scorer)
            elif event.event.startswith(("retrain_", "online_")):
                self.trainer_events.append((event.event, event.error, event.at))
        elif record.topic == self.reply_topic:
            self.replies[decode_result(record.value).request_id] += 1

    def read(self, fn: Callable[[Tally], T]) -> T:
        """Call ``fn`` on this tally under its lock (a consistent view)."""
        with self._lock:
            return fn(self)

    def scorers_of(self, model: str) -> set[str]:
        """Scorer instances that have written a score of ``model`` so far."""
        with self._lock:
            return {s.scorer for per in self.scores.values() for s in per.get(model, [])}

    def stop(self) -> None:
        """Stop reading and close the consumer (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()
