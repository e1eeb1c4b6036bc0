"""The dashboard's live figures: a follower of each service's results, scores and alerts.

Why a follower of ``<service>.results`` rather than the gateway's own replies: the
rendezvous writes every answer there, including those of requests sent by other
gateways or straight onto ``<service>.requests`` by streaming clients, so the dashboard
shows the whole service, not this gateway's share of it.

* :class:`SecondBuckets` aggregates results per second of ``decided_at`` (wall clock):
  requests, deadline misses, answers per model version (``fallback`` / ``none`` when no
  model's answer was given) and a latency histogram of ``decided_in_ms`` (from the
  request's ``sent_at`` to the decision). Memory is bounded by ``horizon_s`` buckets.
* :class:`ServiceFeed` is one background thread with one consumer (no group, so it
  disturbs no other role) over the service's topics that exist; a topic created later
  is picked up within ``rescan_s``. It starts at ``now - horizon_s``, so a dashboard
  opened late still shows the recent past. When ``follow_scores`` is set it also keeps
  a :class:`~modelstream.scoring.stats.StatsBook` over the scores it reads (for a gateway
  whose scorers run elsewhere). It stops itself after ``idle_s`` without a
  :meth:`ServiceFeed.touch` (nobody looking), so a gateway pays for it only while a
  dashboard is open; the next look starts it again.

Late-answer notes on ``results`` (header ``x-modelstream-late``) are skipped: the first
record per request id is the answer. Unreadable records are skipped (the roles that own
those topics dead-letter them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelstream.backplane.port import Backplane, Consumer
from modelstream.backplane.records import Record, TopicPartition, now_ms
from modelstream.errors import DecodeError, ModelstreamError
from modelstream.rendezvous.outcome import LATE_HEADER
from modelstream.scoring.stats import LatencyHistogram, StatsBook
from modelstream.wire.results import Result, decode_result
from modelstream.wire.scores import decode_score
from modelstream.wire.topics import ServiceTopics

log = logging.getLogger(__name__)

MAX_ALERTS = 50


@dataclass
class _Second:
    requests: int = 0
    misses: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)


def _answered_by(result: Result) -> str:
    if result.ref is not None and result.outputs is not None:
        return result.ref
    return "fallback" if result.fallback else "none"


class SecondBuckets:
    """Results per second over the last ``horizon_s`` seconds (not thread-safe)."""

    def __init__(self, horizon_s: int = 300) -> None:
        self.horizon_s = horizon_s
        self._seconds: dict[int, _Second] = {}

    def add(self, result: Result) -> None:
        second = result.decided_at // 1000
        bucket = self._seconds.get(second)
        if bucket is None:
            bucket = self._seconds[second] = _Second()
        bucket.requests += 1
        missed = not result.deadline_met or result.outputs is None
        bucket.misses += missed
        bucket.answers[_answered_by(result)] += 1
        bucket.latency.add(result.decided_in_ms)

    def trim(self, now_s: int) -> None:
        """Forget seconds older than the horizon."""
        oldest = now_s - self.horizon_s
        for second in [s for s in self._seconds if s < oldest]:
            del self._seconds[second]

    def series(
        self, now_ms_: int, seconds: int = 120, recent_s: int = 5, min_s: int = 30
    ) -> dict[str, Any]:
        """Per-second figures up to the last complete second before ``now_ms_``, and now.

        The current second is left out (it is still filling). The series covers the last
        ``seconds`` seconds, less any leading seconds before the first answer seen (but
        at least ``min_s``), so a service that just started fills its charts. ``answers``
        holds counts per second per answerer. ``current`` averages the rate over the last
        ``recent_s`` complete seconds, takes latency percentiles and answer counts over
        the last ``4 * recent_s``, and totals over the whole horizon.
        """
        end = now_ms_ // 1000  # exclusive: the second still filling
        self.trim(end)
        first = min(self._seconds, default=end)
        start = max(end - seconds, min(end - min_s, first))
        times = list(range(start, end))
        rows = [self._seconds.get(t) for t in times]
        names = sorted({n for b in rows if b is not None for n in b.answers})
        recent = [b for b in rows[-recent_s:] if b is not None]
        window = LatencyHistogram()
        answers_recent: Counter[str] = Counter()
        for b in rows[-4 * recent_s :]:
            if b is not None:
                window.merge(b.latency)
                answers_recent.update(b.answers)
        kept = [b for s, b in self._seconds.items() if s < end]
        return {
            "t": times,
            "requests": [b.requests if b else 0 for b in rows],
            "misses": [b.misses if b else 0 for b in rows],
            "p50_ms": [b.latency.quantile(0.5) if b else None for b in rows],
            "p99_ms": [b.latency.quantile(0.99) if b else None for b in rows],
            "answers": {n: [b.answers.get(n, 0) if b else 0 for b in rows] for n in names},
            "current": {
                "requests_per_s": sum(b.requests for b in recent) / recent_s,
                "misses_per_s": sum(b.misses for b in recent) / recent_s,
                "p50_ms": window.quantile(0.5) if window.count else None,
                "p99_ms": window.quantile(0.99) if window.count else None,
                "answers": dict(answers_recent),
                "horizon_s": self.horizon_s,
                "total": sum(b.requests for b in kept),
                "total_misses": sum(b.misses for b in kept),
            },
        }


class ServiceFeed:
    """The follower of one service's topics (see the module docstring)."""

    def __init__(
        self,
        backplane: Backplane,
        service: str,
        *,
        follow_scores: bool = False,
        horizon_s: int = 300,
        idle_s: float = 60.0,
        rescan_s: float = 5.0,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.service = service
        self.topics = ServiceTopics(service)
        self._bp = backplane
        self._follow_scores = follow_scores
        self._idle_s = idle_s
        self._rescan_s = rescan_s
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets = SecondBuckets(horizon_s)
        self._alerts: deque[dict[str, Any]] = deque(maxlen=MAX_ALERTS)
        self.scores = StatsBook()
        self._positions: dict[TopicPartition, int] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._seen = time.monotonic()

    # -- reading (any thread) ----------------------------------------------------------

    def touch(self) -> None:
        """Someone is looking: keep following (start again if it stopped)."""
        with self._lock:
            self._seen = time.monotonic()
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._run, name=f"dashboard-feed:{self.service}", daemon=True
                )
                self._thread.start()

    def series(self, seconds: int = 120) -> dict[str, Any]:
        with self._lock:
            return self._buckets.series(self._clock(), seconds)

    def alerts(self) -> list[dict[str, Any]]:
        """The most recent alerts read from ``<service>.alerts``, newest first."""
        with self._lock:
            return list(reversed(self._alerts))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following and join the thread (idempotent)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self._thread = None

    # -- the follower thread -----------------------------------------------------------

    def _wanted(self) -> list[str]:
        wanted = [self.topics.results, self.topics.alerts]
        if self._follow_scores:
            wanted.append(self.topics.scores)
        existing = {spec.name for spec in self._bp.list_topics()}
        # Never consume a missing topic: consuming would create it with the default
        # partition count, before the role that owns it chose one.
        return [t for t in wanted if t in existing]

    def _open(self, topics: list[str]) -> Consumer:
        consumer = self._bp.consumer(topics, start="latest")
        since = self._clock() - self._buckets.horizon_s * 1000
        for tp in consumer.assignment():
            known = self._positions.get(tp)
            if known is not None:
                consumer.seek(tp, known)
            elif tp.topic == self.topics.alerts:
                consumer.seek_to_beginning([tp])  # few records; the deque keeps the last
            else:
                consumer.seek_to_time(since, [tp])
        return consumer

    def _run(self) -> None:
        consumer: Consumer | None = None
        following: list[str] = []
        rescanned = 0.0
        try:
            while not self._stop.is_set():
                if time.monotonic() - self._seen > self._idle_s:
                    break  # nobody is looking
                if time.monotonic() - rescanned >= self._rescan_s:
                    rescanned = time.monotonic()
                    wanted = self._wanted()
                    if wanted != following:
                        if consumer is not None:
                            self._remember(consumer)
                            consumer.close()
                        consumer, following = (self._open(wanted) if wanted else None), wanted
                if consumer is None:
                    self._stop.wait(0.2)
                    continue
                self._take(consumer.poll(2000, timeout=0.2))
        except ModelstreamError as exc:
            log.warning("dashboard feed of %s stopped: %s", self.service, exc)
        except Exception:
            # Only the dashboard depends on this thread: log, and let the next look
            # start a fresh one rather than take the gateway down.
            log.exception("dashboard feed of %s failed", self.service)
        finally:
            if consumer is not None:
                consumer.close()
            self._reset()

    def _reset(self) -> None:
        # The next start reads the horizon afresh: resuming at the old positions after a
        # long idle spell would replay everything in between.
        with self._lock:
            self._positions.clear()
            self._buckets = SecondBuckets(self._buckets.horizon_s)
            self._alerts.clear()
            self.scores = StatsBook()

    def _remember(self, consumer: Consumer) -> None:
        for tp in consumer.assignment():
            self._positions[tp] = consumer.position(tp)

    def _take(self, records: list[Record]) -> None:
        results, scores, alerts = [], [], []
        for record in records:
            try:
                if record.topic == self.topics.results:
                    if not any(name == LATE_HEADER for name, _ in record.headers):
                        results.append(decode_result(record.value))
                elif record.topic == self.topics.scores:
                    scores.append(decode_score(record.value))
                elif record.topic == self.topics.alerts:
                    alert = orjson.loads(record.value)
                    if isinstance(alert, dict) and "message" in alert:
                        alerts.append(alert)
            except (DecodeError, orjson.JSONDecodeError):
                continue
        if scores:
            self.scores.record_scores(scores)
        if results or alerts:
            with self._lock:
                for result in results:
                    self._buckets.add(result)
                self._alerts.extend(alerts)
