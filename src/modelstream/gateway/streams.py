"""The gateway's two threads on the backplane: a batching producer and reply listeners.

Backplane calls block (a SQLite commit, a Kafka acknowledgement), so neither runs on
the event loop:

* :class:`BatchProducer` — one thread that drains a queue of records and produces
  whatever has accumulated as one batch per topic, so a burst of requests costs one
  durable write rather than one each. It never blocks its callers.
* :class:`ReplyListener` — one thread per reply topic (``<service>.replies.<gateway>``)
  reading it with a groupless consumer from its end. Its consumer exists before the
  first request naming the topic is produced, so no reply can be missed. A reply
  resolves the asyncio future waiting for its request id, on that future's loop; a
  reply for an id nobody waits for (expired, or another incarnation's) is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Callable

from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord, Record
from modelstream.errors import DecodeError, InvalidRequest
from modelstream.logs import log_recovered
from modelstream.wire.results import Result, decode_result

log = logging.getLogger(__name__)

OnError = Callable[[BaseException], None]
MAX_BATCH = 1000


class BatchProducer:
    """Produces records submitted from any thread, batching what accumulates."""

    def __init__(self, backplane: Backplane, name: str = "gateway-producer") -> None:
        self._backplane = backplane
        # None asks the thread to stop.
        self._queue: queue.SimpleQueue[tuple[str, OutRecord, OnError] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def submit(self, topic: str, record: OutRecord, on_error: OnError) -> None:
        """Queue ``record`` for ``topic``; ``on_error`` is called (on the producer's
        thread) with the exception if producing it fails."""
        self._queue.put((topic, record, on_error))

    def stop(self) -> None:
        """Produce what is queued, then end the thread."""
        if self._started:
            self._queue.put(None)
            self._thread.join()
            self._started = False

    def _run(self) -> None:
        stopping = False
        while not stopping:
            items = [self._queue.get()]
            while len(items) < MAX_BATCH:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            by_topic: dict[str, list[tuple[OutRecord, OnError]]] = defaultdict(list)
            for item in items:
                if item is None:
                    stopping = True
                    continue
                topic, record, on_error = item
                by_topic[topic].append((record, on_error))
            for topic, batch in by_topic.items():
                try:
                    self._backplane.produce(topic, [record for record, _ in batch])
                except Exception as exc:
                    log.warning("producing %d records to %s failed: %s", len(batch), topic, exc)
                    for _, on_error in batch:
                        on_error(exc)


class ReplyListener:
    """Resolves the futures of requests waiting for their reply on one topic."""

    def __init__(self, backplane: Backplane, topic: str, poll_timeout: float = 0.1) -> None:
        self.topic = topic
        self._poll_timeout = poll_timeout
        self._lock = threading.Lock()
        self._pending: dict[str, asyncio.Future[Result]] = {}
        self._stop = threading.Event()
        # Created here, before any request naming this topic can be produced.
        self._consumer = backplane.consumer([topic], start="latest")
        for tp in self._consumer.assignment():
            self._consumer.position(tp)  # pin "latest" now on engines that resolve lazily
        self._thread = threading.Thread(target=self._run, name=f"replies:{topic}", daemon=True)
        self._thread.start()

    def expect(self, request_id: str) -> asyncio.Future[Result]:
        """A future the reply for ``request_id`` will resolve (on the running loop)."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        with self._lock:
            if request_id in self._pending:
                raise InvalidRequest(
                    f"request id {request_id!r} is already in flight; ids must be unique"
                )
            self._pending[request_id] = future
        return future

    def forget(self, request_id: str) -> None:
        """Stop waiting for ``request_id`` (answered, timed out or cancelled)."""
        with self._lock:
            self._pending.pop(request_id, None)

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._pending)

    def stop(self, reason: BaseException | None = None) -> None:
        """End the thread and close the consumer (idempotent); requests still waiting
        fail with ``reason`` when given."""
        self._stop.set()
        if reason is not None:
            with self._lock:
                waiting, self._pending = list(self._pending.values()), {}
            for future in waiting:
                with contextlib.suppress(RuntimeError):
                    future.get_loop().call_soon_threadsafe(fail_future, future, reason)
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    records = self._consumer.poll(500, self._poll_timeout)
                except Exception as exc:
                    if self._stop.is_set():
                        break
                    log_recovered(log, exc, "polling %s failed, retrying", self.topic)
                    self._stop.wait(0.5)
                    continue
                if records:
                    self._deliver(records)
        finally:
            self._consumer.close()

    def _deliver(self, records: list[Record]) -> None:
        ready: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Result], Result]]] = (
            defaultdict(list)
        )
        for record in records:
            key = record.key.decode("utf-8", "replace") if record.key is not None else None
            with self._lock:
                future = self._pending.get(key) if key is not None else None
            if future is None:
                continue  # nobody waits: skip decoding it at all
            try:
                result = decode_result(record.value)
            except DecodeError as exc:
                log.warning("unreadable reply on %s: %s", self.topic, exc)
                continue
            with self._lock:
                future = self._pending.pop(result.request_id, None)
            if future is not None:
                ready[future.get_loop()].append((future, result))
        for loop, pairs in ready.items():
            # RuntimeError: the loop closed while the reply was in flight.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, pairs)


def _resolve(pairs: list[tuple[asyncio.Future[Result], Result]]) -> None:
    for future, result in pairs:
        if not future.done():
            future.set_result(result)


def fail_future(future: asyncio.Future[Result], exc: BaseException) -> None:
    """Fail ``future`` with ``exc`` unless it is already done (call on its loop)."""
    if not future.done():
        future.set_exception(exc)
