"""Follow one service's registry live: for long-running roles (scorer, rendezvous, gateway).

:class:`RegistryFollower` runs one background thread with a groupless consumer of
``<service>.models`` and ``<service>.deployment`` from the beginning (the deployment
alone with ``models=False``, for a role that loads no model), and keeps the latest
deployment and every descriptor. Contract:

* ``on_change(deployment, descriptors)`` is called from the follower's thread after each
  polled batch that changed either (the deployment is ``None`` until one exists); the
  descriptors mapping is a fresh copy the callback may keep.
* A record that does not decode (or whose key or service does not match its content) is
  logged and copied to ``<service>.dead-letter`` with the reason, then skipped: it never
  stops the reader. An exception raised by ``on_change`` is logged and swallowed too.
* :meth:`wait_caught_up` returns once everything on the topics when :meth:`start` ran has
  been read and handed to ``on_change``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from modelstream.backplane.port import Backplane, Consumer
from modelstream.backplane.records import Record
from modelstream.errors import DecodeError, ModelstreamError
from modelstream.models.codec import decode_deployment, decode_descriptor
from modelstream.models.deployment import Deployment
from modelstream.models.descriptor import ModelDescriptor
from modelstream.models.refs import ModelRef
from modelstream.wire.deadletter import send_to_dead_letter
from modelstream.wire.topics import ServiceTopics

log = logging.getLogger(__name__)


def ensure_topics(backplane: Backplane, service: str) -> ServiceTopics:
    """Create the service's ``models`` and ``deployment`` topics (one partition, compacted)."""
    topics = ServiceTopics(service)
    backplane.create_topic(topics.models, 1, compacted=True)
    backplane.create_topic(topics.deployment, 1, compacted=True)
    return topics


OnChange = Callable[[Deployment | None, dict[ModelRef, ModelDescriptor]], None]


class RegistryFollower:
    """A background reader of one service's models and deployment (see the module doc)."""

    def __init__(
        self,
        backplane: Backplane,
        service: str,
        on_change: OnChange,
        *,
        poll_timeout: float = 0.2,
        models: bool = True,
    ) -> None:
        """``models=False`` follows the deployment alone (``descriptors`` stays empty): for
        a role that never loads a model, which then reads no model bytes at start."""
        self._bp = backplane
        self._service = service
        self._topics = ensure_topics(backplane, service)
        self._read = [self._topics.models] if models else []
        self._read.append(self._topics.deployment)
        self._on_change = on_change
        self._poll_timeout = poll_timeout
        self._deployment: Deployment | None = None
        self._descriptors: dict[ModelRef, ModelDescriptor] = {}
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def deployment(self) -> Deployment | None:
        with self._lock:
            return self._deployment

    @property
    def descriptors(self) -> dict[ModelRef, ModelDescriptor]:
        with self._lock:
            return dict(self._descriptors)

    def start(self) -> None:
        """Start the reader thread (once)."""
        if self._thread is not None:
            raise RuntimeError("this follower was already started")
        ends: dict[tuple[str, int], int] = {}
        for topic in self._read:
            for p in self._bp.partitions(topic):
                if p.end > 0:
                    ends[(topic, p.partition)] = p.end
        consumer = self._bp.consumer(self._read, start="earliest")
        self._thread = threading.Thread(
            target=self._run, args=(consumer, ends), name=f"registry-{self._service}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the reader and wait for it to end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_caught_up(self, timeout: float | None = None) -> bool:
        """Whether the follower read everything present at start, waiting up to ``timeout``."""
        return self._caught_up.wait(timeout)

    def _run(self, consumer: Consumer, ends: dict[tuple[str, int], int]) -> None:
        pending = dict(ends)
        if not pending:
            self._caught_up.set()
        try:
            while not self._stop.is_set():
                try:
                    batch = consumer.poll(500, timeout=self._poll_timeout)
                except ModelstreamError as exc:
                    log.warning("registry follower of %s: poll failed: %s", self._service, exc)
                    self._stop.wait(1.0)
                    continue
                changed = False
                for record in batch:
                    changed |= self._apply(record)
                    end = pending.get((record.topic, record.partition))
                    if end is not None and record.offset + 1 >= end:
                        del pending[(record.topic, record.partition)]
                if changed:
                    self._notify()
                if not pending:
                    self._caught_up.set()
        finally:
            consumer.close()

    def _apply(self, record: Record) -> bool:
        """Fold ``record`` into the state; whether anything changed."""
        try:
            if record.topic == self._topics.models:
                descriptor = decode_descriptor(record.value)
                if record.key != descriptor.ref.key or descriptor.service != self._service:
                    raise DecodeError(
                        f"descriptor of {descriptor.service}/{descriptor.ref} under key "
                        f"{record.key!r} does not belong here"
                    )
                with self._lock:
                    if self._descriptors.get(descriptor.ref) == descriptor:
                        return False
                    self._descriptors[descriptor.ref] = descriptor
                return True
            deployment = decode_deployment(record.value)
            if deployment.service != self._service:
                raise DecodeError(f"deployment of service {deployment.service!r} does not belong")
            with self._lock:
                if deployment == self._deployment:
                    return False
                self._deployment = deployment
            return True
        except DecodeError as exc:
            self._dead_letter(record, str(exc))
            return False

    def _dead_letter(self, record: Record, reason: str) -> None:
        try:
            send_to_dead_letter(self._bp, self._topics.dead_letter, record, reason)
        except ModelstreamError as exc:
            log.error("cannot dead-letter %s@%d (%s): %s", record.topic, record.offset, reason, exc)

    def _notify(self) -> None:
        with self._lock:
            deployment, descriptors = self._deployment, dict(self._descriptors)
        try:
            self._on_change(deployment, descriptors)
        except Exception:  # a callback bug must not stop the registry for the process
            log.exception("registry follower of %s: on_change raised", self._service)
