"""Load for the example, by the two ways a request reaches a service.

* :class:`HttpLoad`: Open Inference Protocol V2 calls to the gateway
  (``POST /v2/models/<service>/infer``), from a few threads, at a bounded rate and count.
  A request is *acknowledged* when the gateway answered 200.
* :class:`KafkaLoad`: request records produced straight onto ``<service>.requests``
  (what another stream application would do), each with ``reply_to`` naming a topic
  of the sender's own; the rendezvous sends the answer there as well as to ``results``.
  A request is *acknowledged* when the produce call returned (the broker has it).

Both stop after ``count`` requests or ``seconds``, whichever comes first, and take the
rows (and their true classes, for the labels) from the same dataset.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import numpy as np
import numpy.typing as npt

from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord, now_ms
from modelstream.wire.labels import Label
from modelstream.wire.requests import InferenceRequest
from modelstream.wire.tensors import Tensor
from modelstream.wire.topics import ServiceTopics


@dataclass
class Sent:
    """What one driver sent: ids in order, which were acknowledged, and when each went."""

    ids: list[str] = field(default_factory=list)
    acknowledged: set[str] = field(default_factory=set)
    sent_at: dict[str, int] = field(default_factory=dict)
    truth: dict[str, int] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, rid: str, at: int, label: int) -> None:
        with self.lock:
            self.ids.append(rid)
            self.sent_at[rid] = at
            self.truth[rid] = label


def _paced(index: int, rate: float, start: float, stop: threading.Event) -> bool:
    """Wait for request ``index``'s slot; ``False`` when told to stop."""
    delay = start + index / rate - time.monotonic()
    return not (delay > 0 and stop.wait(delay))


class HttpLoad:
    """Requests through the gateway's HTTP endpoint."""

    def __init__(
        self,
        base_url: str,
        service: str,
        input_name: str,
        x: npt.NDArray[np.float32],
        y: npt.NDArray[np.int64],
        *,
        tag: str,
        workers: int = 8,
        timeout_s: float = 10.0,
    ) -> None:
        self.url = f"{base_url}/v2/models/{service}/infer"
        self.input_name = input_name
        self.x, self.y = x, y
        self.tag = tag
        self.workers = workers
        self.timeout_s = timeout_s
        self.sent = Sent()

    def run(self, count: int, rate: float, seconds: float, stop: threading.Event) -> Sent:
        """Send up to ``count`` requests at ``rate``/s for at most ``seconds``; wait for all."""
        start = time.monotonic()
        with (
            httpx.Client(timeout=self.timeout_s) as client,
            ThreadPoolExecutor(self.workers, thread_name_prefix="http-load") as pool,
        ):
            for i in range(count):
                if not _paced(i, rate, start, stop) or time.monotonic() - start > seconds:
                    break
                pool.submit(self._one, client, i)
        return self.sent

    def _one(self, client: httpx.Client, i: int) -> None:
        row = i % len(self.x)
        rid = f"{self.tag}-http-{i}"
        body = {
            "id": rid,
            "inputs": [
                {
                    "name": self.input_name,
                    "datatype": "FP32",
                    "shape": [1, self.x.shape[1]],
                    "data": [float(v) for v in self.x[row]],
                }
            ],
        }
        self.sent.note(rid, now_ms(), int(self.y[row]))
        try:
            response = client.post(self.url, json=body)
        except httpx.HTTPError as exc:
            with self.sent.lock:
                self.sent.failures[type(exc).__name__] += 1
            return
        with self.sent.lock:
            if response.status_code == 200:
                self.sent.acknowledged.add(rid)
            else:
                self.sent.failures[f"HTTP {response.status_code}"] += 1


class KafkaLoad:
    """Request records produced straight onto the service's requests topic."""

    def __init__(
        self,
        backplane: Backplane,
        service: str,
        input_name: str,
        x: npt.NDArray[np.float32],
        y: npt.NDArray[np.int64],
        *,
        tag: str,
        reply_to: str,
        deadline_ms: int,
        batch: int = 10,
    ) -> None:
        self.backplane = backplane
        self.service = service
        self.topics = ServiceTopics(service)
        self.input_name = input_name
        self.x, self.y = x, y
        self.tag = tag
        self.reply_to = reply_to
        self.deadline_ms = deadline_ms
        self.batch = batch
        self.sent = Sent()

    def run(self, count: int, rate: float, seconds: float, stop: threading.Event) -> Sent:
        """Produce up to ``count`` requests in batches at ``rate``/s for at most ``seconds``."""
        start = time.monotonic()
        for first in range(0, count, self.batch):
            if not _paced(first, rate, start, stop) or time.monotonic() - start > seconds:
                break
            indexes = range(first, min(count, first + self.batch))
            now = now_ms()
            requests = [self._request(i, now) for i in indexes]
            for request, i in zip(requests, indexes, strict=True):
                self.sent.note(request.id, now, int(self.y[i % len(self.y)]))
            try:
                self.backplane.produce(
                    self.topics.requests,
                    [OutRecord(r.encode(), r.key, timestamp=now) for r in requests],
                )
            except Exception as exc:  # a failed produce is not acknowledged: not counted lost
                self.sent.failures[type(exc).__name__] += len(requests)
                continue
            self.sent.acknowledged.update(r.id for r in requests)
        return self.sent

    def _request(self, i: int, now: int) -> InferenceRequest:
        row = self.x[i % len(self.x)]
        tensor = Tensor(self.input_name, "FP32", (1, len(row)), tuple(float(v) for v in row))
        return InferenceRequest(
            id=f"{self.tag}-kafka-{i}",
            service=self.service,
            event_time=now,
            deadline=now + self.deadline_ms,
            inputs=(tensor,),
            reply_to=self.reply_to,
            sent_at=now,
        )


def send_labels(backplane: Backplane, service: str, *loads: Sent) -> int:
    """Ground truth for every acknowledged request, as it would arrive later from the world."""
    now = now_ms()
    labels = [
        Label(service=service, value=sent.truth[rid], labelled_at=now, request_id=rid)
        for sent in loads
        for rid in sorted(sent.acknowledged)
    ]
    topic = ServiceTopics(service).labels
    for i in range(0, len(labels), 500):
        chunk = labels[i : i + 500]
        backplane.produce(topic, [OutRecord(lb.encode(), lb.key) for lb in chunk])
    return len(labels)
