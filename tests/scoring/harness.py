"""Test harness for scorers on real parts: requests, a score watcher, a load generator."""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord, now_ms
from modelstream.models.codec import encode_deployment
from modelstream.models.deployment import Deployment
from modelstream.scoring.events import ModelEvent, decode_model_event
from modelstream.wire.requests import InferenceRequest
from modelstream.wire.scores import Score, decode_score
from modelstream.wire.tensors import array_to_tensor
from modelstream.wire.topics import ServiceTopics

_ids = itertools.count()


def make_request(
    service: str, x: npt.NDArray[Any], *, deadline_ms: int = 120_000, **kw: Any
) -> InferenceRequest:
    now = now_ms()
    rid = kw.pop("id", None) or f"r{next(_ids)}-{time.monotonic_ns()}"
    row = np.asarray(x, np.float32).reshape(1, -1)
    return InferenceRequest(
        rid, service, now, now + deadline_ms, (array_to_tensor("input", row),), sent_at=now, **kw
    )


def send(bp: Backplane, service: str, requests: list[InferenceRequest]) -> None:
    bp.produce(
        ServiceTopics(service).requests, [OutRecord(r.encode(), key=r.key) for r in requests]
    )


def force_deployment(bp: Backplane, deployment: Deployment) -> None:
    """Write a deployment record as a foreign writer would, bypassing the registry's checks."""
    topic = ServiceTopics(deployment.service).deployment
    bp.produce(topic, [OutRecord(encode_deployment(deployment), key=deployment.service.encode())])


def wait_until(check: Callable[[], bool], timeout: float, what: str, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


class Watcher:
    """Reads a service's scores and model events from the beginning (groupless)."""

    def __init__(self, bp: Backplane, service: str) -> None:
        topics = ServiceTopics(service)
        for name in (topics.scores, topics.model_events, topics.dead_letter):
            bp.create_topic(name)
        self._scores = bp.consumer([topics.scores], start="earliest")
        self._events = bp.consumer([topics.model_events], start="earliest")
        self._dead = bp.consumer([topics.dead_letter], start="earliest")
        self.scores: list[Score] = []
        self.events: list[ModelEvent] = []
        self.dead_letters: list[dict[str, bytes]] = []

    def drain(self) -> None:
        while batch := self._scores.poll(5000, 0.01):
            self.scores.extend(decode_score(r.value) for r in batch)
        while batch := self._events.poll(500, 0.0):
            self.events.extend(decode_model_event(r.value) for r in batch)
        while batch := self._dead.poll(500, 0.0):
            self.dead_letters.extend(dict(r.headers) for r in batch)

    def by_request(self) -> dict[str, list[Score]]:
        out: dict[str, list[Score]] = defaultdict(list)
        for s in self.scores:
            out[s.request_id].append(s)
        return out

    def wait_scores(self, ids: set[str], models: int, timeout: float) -> dict[str, list[Score]]:
        """Wait until every id in ``ids`` has at least ``models`` scores."""

        def done() -> bool:
            self.drain()
            got = self.by_request()
            return all(len(got.get(i, ())) >= models for i in ids)

        try:
            wait_until(done, timeout, f"{models} score(s) for each of {len(ids)} requests")
        except AssertionError as exc:
            got = self.by_request()
            short = sorted(i for i in ids if len(got.get(i, ())) < models)
            detail = {i: sorted(s.ref for s in got.get(i, ())) for i in short[:10]}
            raise AssertionError(
                f"{exc}: {len(short)} request(s) short of scores, e.g. {detail}"
            ) from None
        return self.by_request()

    def wait_event(
        self, kind: str, version: int, timeout: float, model: str | None = None
    ) -> ModelEvent:
        def find() -> ModelEvent | None:
            self.drain()
            return next(
                (
                    e
                    for e in self.events
                    if e.event == kind and e.version == version and model in (None, e.model)
                ),
                None,
            )

        wait_until(lambda: find() is not None, timeout, f"a {kind} event for version {version}")
        found = find()
        assert found is not None
        return found

    def close(self) -> None:
        for consumer in (self._scores, self._events, self._dead):
            consumer.close()


class Load:
    """A thread producing requests continuously until stopped; remembers every input."""

    def __init__(self, bp: Backplane, service: str, x: npt.NDArray[Any], batch: int = 4) -> None:
        self._bp, self._service, self._x, self._batch = bp, service, x, batch
        self.sent: dict[str, npt.NDArray[Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def _run(self) -> None:
        rows = itertools.cycle(range(len(self._x)))
        while not self._stop.is_set():
            reqs = []
            for _ in range(self._batch):
                row = self._x[next(rows)]
                req = make_request(self._service, row)
                self.sent[req.id] = row
                reqs.append(req)
            send(self._bp, self._service, reqs)
            self._stop.wait(0.01)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def __exit__(self, *exc: object) -> None:
        self.stop()
