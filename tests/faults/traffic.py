"""Steady load on a service pair, and a live count of what came back.

Two ways a request reaches a service, each with its own notion of *acknowledged*:

* :class:`StreamLoad` produces request records straight onto the backplane, each with a
  ``reply_to``: onto ``<plain>.requests``, and for the featurized service onto
  ``<feat>.events`` keyed by entity (where the gateway puts them too, together with one
  raw event per request). Acknowledged = the produce call returned.
* :class:`HttpLoad` posts Open Inference Protocol V2 requests to one or more gateways.
  Acknowledged = HTTP 200 (the answer itself came back).

Both are bounded by a count and a duration. :class:`Tally` reads the services'
``results`` and ``scores`` from the beginning with no consumer group (it disturbs no
role) and keeps, per request id, how many answers there are (the first non-late record
per id on ``results``; late-answer notes, header ``x-modelstream-late``, are not
answers), what kind the first answer is (``model``: a model's output; ``fallback``,
``error``: the deadline's or a failure's answer, which no client may count as served),
how many replies each id got on the stream clients' ``reply_to`` topic, and when each
topic was last seen to grow.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import numpy as np
import numpy.typing as npt
import orjson

from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord, Record, now_ms
from modelstream.errors import DecodeError
from modelstream.features.records import request_record
from modelstream.wire.requests import InferenceRequest
from modelstream.wire.results import decode_result
from modelstream.wire.tensors import Tensor
from modelstream.wire.topics import ServiceTopics

LATE_HEADER = "x-modelstream-late"
SCORER_HEADER = "x-modelstream-scorer"
ENTITIES = 16
T = TypeVar("T")


@dataclass
class Sent:
    """Ids sent, which were acknowledged and when; failures by kind."""

    sent_at: dict[str, int] = field(default_factory=dict)
    acked_at: dict[str, int] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acked(self, before_ms: int | None = None) -> set[str]:
        with self.lock:
            return {r for r, t in self.acked_at.items() if before_ms is None or t < before_ms}

    def merge(self, other: Sent) -> None:
        with self.lock, other.lock:
            self.sent_at.update(other.sent_at)
            self.acked_at.update(other.acked_at)
            self.failures.update(other.failures)


def paced(index: int, rate: float, start: float, stop: threading.Event) -> bool:
    """Wait for slot ``index``; ``False`` once told to stop.

    A sender behind its schedule (a loaded machine) does not wait, but still checks
    ``stop``: otherwise it would run on to its time limit after the test stopped it.
    """
    delay = start + index / rate - time.monotonic()
    if delay > 0:
        return not stop.wait(delay)
    return not stop.is_set()


class StreamLoad:
    """Request records produced straight onto the backplane, half to each service."""

    def __init__(
        self,
        backplane: Backplane,
        plain: str,
        feat: str,
        x: npt.NDArray[np.float32],
        *,
        tag: str,
        reply_to: str,
        deadline_ms: int,
        batch: int = 10,
    ) -> None:
        self.bp = backplane
        self.plain, self.feat = ServiceTopics(plain), ServiceTopics(feat)
        self.x = x
        self.tag = tag
        self.reply_to = reply_to
        self.deadline_ms = deadline_ms
        self.batch = batch
        self.sent = Sent()

    def run(self, count: int, rate: float, seconds: float, stop: threading.Event) -> None:
        start = time.monotonic()
        for first in range(0, count, self.batch):
            if not paced(first, rate, start, stop) or time.monotonic() - start > seconds:
                return
            self._send(first, range(first, min(count, first + self.batch)))

    def _send(self, first: int, indexes: range) -> None:
        now = now_ms()
        to_plain = [self._request(i, now, self.plain.service) for i in indexes if i % 2 == 0]
        to_feat = [self._request(i, now, self.feat.service) for i in indexes if i % 2 == 1]
        with self.sent.lock:
            for r in (*to_plain, *to_feat):
                self.sent.sent_at[r.id] = now
        batches = [
            (self.plain.requests, [OutRecord(r.encode(), r.key, timestamp=now) for r in to_plain]),
            (self.feat.events, [out for r in to_feat for out in self._featurized(r, now)]),
        ]
        for (topic, records), requests in zip(batches, (to_plain, to_feat), strict=True):
            try:
                self.bp.produce(topic, records)
            except Exception as exc:  # not acknowledged, so never counted as lost
                with self.sent.lock:
                    self.sent.failures[type(exc).__name__] += len(requests)
                continue
            acked = now_ms()
            with self.sent.lock:
                for r in requests:
                    self.sent.acked_at[r.id] = acked

    def _featurized(self, request: InferenceRequest, now: int) -> list[OutRecord]:
        assert request.entity is not None
        reading = orjson.dumps({"temp": float(len(request.id) % 7)})
        return [OutRecord(reading, request.entity.encode(), (), now - 1), request_record(request)]

    def _request(self, i: int, now: int, service: str) -> InferenceRequest:
        if service == self.plain.service:
            row = self.x[i % len(self.x)]
            tensor = Tensor("input", "FP32", (1, len(row)), tuple(float(v) for v in row))
            entity = None
        else:
            tensor = Tensor("reading", "FP32", (1, 1), (0.0,))
            entity = f"e{i % ENTITIES}"
        return InferenceRequest(
            id=f"{self.tag}-s{i}",
            service=service,
            event_time=now,
            deadline=now + self.deadline_ms,
            inputs=(tensor,),
            reply_to=self.reply_to,
            entity=entity,
            sent_at=now,
        )


class HttpLoad:
    """OIP V2 calls to one gateway, alternating between the two services."""

    def __init__(
        self,
        base_url: str,
        plain: str,
        feat: str,
        x: npt.NDArray[np.float32],
        *,
        tag: str,
        deadline_ms: int,
        workers: int = 24,
    ) -> None:
        self.base_url = base_url
        self.plain, self.feat = plain, feat
        self.x = x
        self.tag = tag
        self.deadline_ms = deadline_ms
        self.workers = workers
        # past the deadline, the gateway's grace and its hop: a call still open is hung
        self.timeout_s = deadline_ms / 1000 + 15
        self.sent = Sent()

    def run(self, count: int, rate: float, seconds: float, stop: threading.Event) -> None:
        start = time.monotonic()
        with (
            httpx.Client(base_url=self.base_url, timeout=self.timeout_s) as client,
            ThreadPoolExecutor(self.workers, thread_name_prefix="http-load") as pool,
        ):
            for i in range(count):
                if not paced(i, rate, start, stop) or time.monotonic() - start > seconds:
                    break
                pool.submit(self._one, client, i)

    def _one(self, client: httpx.Client, i: int) -> None:
        rid = f"{self.tag}-h{i}"
        params: dict[str, Any] = {"deadline_ms": self.deadline_ms}
        if i % 2 == 0:
            row = [float(v) for v in self.x[i % len(self.x)]]
            service = self.plain
            inputs = [{"name": "input", "datatype": "FP32", "shape": [1, len(row)], "data": row}]
        else:
            service, params["entity"] = self.feat, f"e{i % ENTITIES}"
            inputs = [{"name": "reading", "datatype": "FP32", "shape": [1, 1], "data": [0.0]}]
        body = {"id": rid, "inputs": inputs, "parameters": params}
        with self.sent.lock:
            self.sent.sent_at[rid] = now_ms()
        try:
            response = client.post(f"/v2/models/{service}/infer", json=body)
        except httpx.HTTPError as exc:
            with self.sent.lock:
                self.sent.failures[type(exc).__name__] += 1
            return
        with self.sent.lock:
            if response.status_code == 200:
                self.sent.acked_at[rid] = now_ms()
            else:
                self.sent.failures[f"HTTP {response.status_code}"] += 1


class Tally:
    """A live, thread-safe count of the answers and outputs of the two services."""

    def __init__(self, backplane: Backplane, services: tuple[str, str], reply_to: str) -> None:
        topics = [ServiceTopics(s) for s in services]
        self.results = {t.results for t in topics}
        self.reply_to = reply_to
        self.scores = {t.scores for t in topics}
        self.requests = {t.requests for t in topics}
        watched = sorted(self.results | self.scores | self.requests | {reply_to})
        for name in watched:
            backplane.create_topic(name)
        self._consumer = backplane.consumer(watched, start="earliest")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.answers: Counter[str] = Counter()
        self.answered_at: dict[str, int] = {}  # first answer, as observed here (wall ms)
        self.kind_of: dict[str, str] = {}  # request id -> model / fallback / error
        self.not_by_model: dict[str, str] = {}  # request id -> what its answer said
        self.replies: Counter[str] = Counter()  # request id -> replies on reply_to
        self.late_notes = 0
        self.undecodable = 0
        self.seen: dict[str, list[int]] = defaultdict(list)  # topic -> observation times
        self.scorer_first_seen: dict[str, int] = {}  # scorer instance -> first score seen
        self.requested: set[str] = set()  # ids seen on a requests topic (keyed by id)
        self._thread = threading.Thread(target=self._run, name="tally", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            records = self._consumer.poll(max_records=5000, timeout=0.05)
            now = now_ms()
            with self._lock:
                for record in records:
                    self.seen[record.topic].append(now)
                    try:
                        self._take(record, now)
                    except DecodeError:
                        self.undecodable += 1

    def _take(self, record: Record, now: int) -> None:
        if record.topic in self.requests:
            self.requested.add((record.key or b"").decode(errors="replace"))
            return
        if record.topic in self.scores:
            scorer = (record.header(SCORER_HEADER) or b"?").decode()
            self.scorer_first_seen.setdefault(scorer, now)
        if record.topic == self.reply_to:
            self.replies[decode_result(record.value).request_id] += 1
            return
        if record.topic not in self.results:
            return
        if record.header(LATE_HEADER) is not None:
            self.late_notes += 1
            return
        result = decode_result(record.value)
        self.answers[result.request_id] += 1
        if result.request_id not in self.answered_at:
            self.answered_at[result.request_id] = now
            kind = "fallback" if result.fallback else "error" if result.error else "model"
            self.kind_of[result.request_id] = kind
            if kind != "model":
                late_ms = result.decided_at - result.deadline
                self.not_by_model[result.request_id] = (
                    f"{kind} ({result.error or 'no error'}), decided {late_ms:+d} ms from its "
                    f"deadline, answers {list(result.answers)}, missing {list(result.missing)}"
                )

    def read(self, fn: Callable[[Tally], T]) -> T:
        with self._lock:
            return fn(self)

    def first_seen_after(self, topics: set[str], after_ms: int) -> int | None:
        """When a record of ``topics`` was first observed at or after ``after_ms``."""
        with self._lock:
            times = [t for topic in topics for t in self.seen[topic] if t >= after_ms]
        return min(times, default=None)

    def unanswered(self, ids: set[str]) -> set[str]:
        with self._lock:
            return {r for r in ids if not self.answers[r]}

    def stop(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(10)
            self._consumer.close()
