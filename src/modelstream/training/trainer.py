"""The trainer role: retrains a service's model on a schedule or every N new labels.

Contract:

* :meth:`Trainer.run_once` runs one cycle now (:func:`.cycle.run_cycle`) and returns its
  :class:`~.cycle.CycleResult`; tests and ``modelstream train`` call it directly.
* :meth:`Trainer.start` runs a background thread that fires a cycle when
  ``every_seconds`` have passed since the last one (by the injected clock) or when
  ``every_labels`` new labels have arrived since the last one, whichever comes first;
  :meth:`Trainer.stop` ends it (bounded join) and closes the label consumer.
* New labels are counted on ``<service>.labels`` with the consumer group
  ``<service>.trainer``; offsets are committed when a cycle starts, so after a restart
  labels counted toward a cycle that ran are not counted again (a crash in between counts
  them twice: at-least-once, an extra retrain at worst). A new group starts at the
  earliest label, so labels that arrived before the first trainer count as new.
* A cycle that raises a ``ModelstreamError`` (a bad function, an unconvertible model) is
  logged and counted in :attr:`Trainer.failures`; the role keeps running.
* The training function is imported in the constructor, so a bad ``module:function``
  fails at once with a ``ConfigurationError``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from modelstream.backplane.port import Backplane, Consumer
from modelstream.clock import Clock, SystemClock
from modelstream.errors import ConfigurationError, ModelstreamError
from modelstream.settings import Settings
from modelstream.threads import ended
from modelstream.training.checkpoints import CheckpointStore, default_root
from modelstream.training.config import TrainerConfig
from modelstream.training.cycle import CycleResult, Source, run_cycle
from modelstream.training.events import trainer_id
from modelstream.training.function import load_function
from modelstream.wire.topics import ServiceTopics

log = logging.getLogger(__name__)


def import_training_stack() -> None:
    """Import now what a training cycle imports lazily (skl2onnx to convert, skops to
    checkpoint, which pulls in much of scikit-learn and even pytest). An import holds the
    GIL throughout: done by the first cycle in a process that also serves, it would stall
    every other role for several hundred milliseconds and requests would miss deadlines."""
    import skl2onnx  # noqa: F401
    import skops.io  # noqa: F401


class Trainer:
    """Periodic retraining of one service (see the module doc)."""

    def __init__(
        self,
        backplane: Backplane,
        settings: Settings,
        service: str,
        config: TrainerConfig,
        *,
        clock: Clock | None = None,
    ) -> None:
        self._bp = backplane
        self._settings = settings
        self._topics = ServiceTopics(service)
        self.config = config
        self._clock = clock or SystemClock()
        self.function = load_function(config.function)
        if config.warm_start and not self.function.warm_capable:
            raise ConfigurationError(
                f"warm start needs a training function that accepts `parent`; "
                f"{config.function} does not: add `parent=None` to its parameters"
            )
        root = config.checkpoint_dir or default_root(settings)
        self.checkpoints = CheckpointStore(Path(root), settings, config.trusted_types)
        self._who = trainer_id()
        self._labels: Consumer | None = None
        self._new_labels = 0
        self._last_cycle_ms = self._clock.now_ms()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.results: list[CycleResult] = []
        self.failures = 0

    @property
    def service(self) -> str:
        return self._topics.service

    source: Source | None = None  # how a cycle reads its window (None: the ArchiveReader)

    def run_once(self, start_ms: int | None = None, end_ms: int | None = None) -> CycleResult:
        """Run one cycle now over ``[start_ms, end_ms)`` of event time (default: the
        configured window ending now, or the whole archive)."""
        with self._lock:
            if end_ms is None and self.config.window_ms is not None:
                end_ms = self._clock.now_ms()
            if start_ms is None and self.config.window_ms is not None and end_ms is not None:
                start_ms = end_ms - self.config.window_ms
            self._commit_labels()
            self._last_cycle_ms = self._clock.now_ms()
            result = run_cycle(
                self._bp,
                self._settings,
                self.service,
                config=self.config,
                function=self.function,
                checkpoints=self.checkpoints,
                start_ms=start_ms,
                end_ms=end_ms,
                who=self._who,
                source=self.source,
            )
            self.results.append(result)
            return result

    # -- triggers ----------------------------------------------------------------------------

    def _label_consumer(self) -> Consumer:
        if self._labels is None:
            self._bp.create_topic(self._topics.labels)
            self._labels = self._bp.consumer(
                [self._topics.labels], group=f"{self.service}.trainer", start="earliest"
            )
        return self._labels

    def count_labels(self, timeout: float = 0.2) -> int:
        """Read newly arrived labels; return how many arrived since the last cycle."""
        consumer = self._label_consumer()
        batch = consumer.poll(max_records=5000, timeout=timeout)
        while batch:
            self._new_labels += len(batch)
            batch = consumer.poll(max_records=5000, timeout=0.0)
        return self._new_labels

    def _commit_labels(self) -> None:
        if self._labels is not None and self._labels.assignment():
            self._labels.commit()
        self._new_labels = 0

    def due(self, timeout: float = 0.2) -> bool:
        """Whether a trigger fired: enough new labels, or enough time since the last cycle."""
        labels = self.config.every_labels
        if labels is not None and self.count_labels(timeout) >= labels:
            return True
        seconds = self.config.every_seconds
        return seconds is not None and self._clock.now_ms() - self._last_cycle_ms >= seconds * 1000

    def step(self, timeout: float = 0.2) -> CycleResult | None:
        """Run a cycle if one is due; the role's loop calls this."""
        if not self.due(timeout):
            return None
        try:
            return self.run_once()
        except ModelstreamError as exc:
            self.failures += 1
            log.error("training cycle of %s failed: %s", self.service, exc)
            return None

    def start(self) -> None:
        """Run :meth:`step` in a background thread until :meth:`stop`."""
        if self.config.every_seconds is None and self.config.every_labels is None:
            raise ConfigurationError(
                "a trainer role needs a trigger: set every_seconds and/or every_labels"
            )
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name=f"trainer-{self.service}", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.step(timeout=0.2)
            self._stop.wait(0.05)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread (waiting up to ``timeout`` for a running cycle), close consumers."""
        self._stop.set()
        if not ended(self._thread, timeout, f"the trainer of {self.service}"):
            return  # a thread still running keeps what it uses (see modelstream.threads)
        self._thread = None
        if self._labels is not None:
            self._labels.close()
            self._labels = None

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
