"""Run a model's ``predict`` with a timeout, so neither a raising nor a hanging model
can take the scorer down.

Contract of :class:`ModelRunner`:

* :meth:`ModelRunner.run` calls ``model.predict(inputs)`` on the runner's worker thread
  and waits at most ``timeout_s``. It returns the outputs and the time spent in
  ``predict`` (ms), or raises :class:`~modelstream.errors.ScoringError` when the model
  raised (the message names the exception) or did not answer in time.
* Calls never overlap on one model (the loader port promises models one thread at a
  time): a worker that timed out is *abandoned* -- it finishes its hung call in the
  background and then exits -- and the next call gets a fresh worker. Abandoned workers
  are daemon threads, so a model that never returns cannot block interpreter exit; the
  scorer does not reuse the model object they still hold until they finish
  (:attr:`ModelRunner.busy_models`).
* :meth:`ModelRunner.close` stops the worker and waits (bounded) for abandoned ones.

Why a thread and not a process: onnxruntime releases the GIL while it computes, models
are already loaded in this process, and a hand-off between threads costs microseconds,
which matters at batch size 1.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy.typing as npt

from modelstream.errors import ScoringError
from modelstream.models.loader import Arrays, LoadedModel

Outputs = dict[str, npt.NDArray[Any]]


def _held_lock() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass(slots=True)
class _Call:
    model: LoadedModel
    inputs: Arrays
    # Released by the worker when the call is over. A bare lock, not an Event: waiting on
    # it is one C call, where an Event's condition costs about 14 us more per call.
    done: threading.Lock = field(default_factory=_held_lock)
    outputs: Outputs | None = None
    error: BaseException | None = None
    elapsed_ms: float = 0.0


class _Worker:
    """One daemon thread taking calls from a queue until it gets ``None``."""

    def __init__(self, name: str, on_exit: Callable[[_Worker], None]) -> None:
        self.calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self.current: _Call | None = None
        self._on_exit = on_exit
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        try:
            while True:
                call = self.calls.get()
                if call is None:
                    return
                self.current = call
                started = time.perf_counter()
                try:
                    call.outputs = call.model.predict(call.inputs)
                except BaseException as exc:  # any failure of user code becomes a score
                    call.error = exc
                finally:
                    call.elapsed_ms = (time.perf_counter() - started) * 1000
                    self.current = None
                    call.done.release()
        finally:
            self._on_exit(self)


class ModelRunner:
    """Runs predict calls one at a time on a worker thread, each bounded by a timeout."""

    def __init__(self, timeout_s: float | None = 1.0, *, name: str = "model") -> None:
        self.timeout_s = timeout_s
        self._name = name
        self._lock = threading.Lock()
        self._worker: _Worker | None = None
        self._abandoned: list[_Worker] = []
        self._spawned = 0
        self._closed = False

    def _forget(self, worker: _Worker) -> None:
        with self._lock:
            if worker in self._abandoned:
                self._abandoned.remove(worker)

    def _live_worker(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise ScoringError("the model runner was closed; the scorer is stopping")
            if self._worker is None:
                self._spawned += 1
                self._worker = _Worker(f"{self._name}-predict-{self._spawned}", self._forget)
            return self._worker

    def run(
        self, model: LoadedModel, inputs: Arrays, timeout_s: float | None = None
    ) -> tuple[Outputs, float]:
        """``(outputs, ms in predict)``; raises ``ScoringError`` on an exception or timeout."""
        limit = self.timeout_s if timeout_s is None else timeout_s
        worker = self._live_worker()
        call = _Call(model, inputs)
        worker.calls.put(call)
        if not call.done.acquire(timeout=-1 if limit is None else max(0.0, limit)):
            with self._lock:
                # The worker is stuck in user code: let it finish (and exit) on its own.
                worker.calls.put(None)
                self._abandoned.append(worker)
                if self._worker is worker:
                    self._worker = None
            shown = "no" if limit is None else f"{limit * 1000:.0f} ms"
            raise ScoringError(
                f"model did not answer within its timeout of {shown}; "
                "raise the scorer's timeout or fix the model"
            )
        if call.error is not None:
            exc = call.error
            raise ScoringError(f"model raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(call.outputs, dict):
            raise ScoringError(
                f"model returned {type(call.outputs).__name__}, not a dict of arrays by name"
            )
        return call.outputs, call.elapsed_ms

    @property
    def busy_models(self) -> list[LoadedModel]:
        """Models still inside a call that timed out (do not close them yet)."""
        with self._lock:
            return [w.current.model for w in self._abandoned if w.current is not None]

    @property
    def abandoned(self) -> int:
        """How many workers are still finishing a call that timed out."""
        with self._lock:
            return len(self._abandoned)

    def close(self, wait_s: float = 5.0) -> None:
        """Stop the worker; wait up to ``wait_s`` in all for abandoned workers to end."""
        with self._lock:
            self._closed = True
            worker, self._worker = self._worker, None
            abandoned = list(self._abandoned)
        deadline = time.monotonic() + wait_s
        if worker is not None:
            worker.calls.put(None)
            worker.thread.join(max(0.0, deadline - time.monotonic()))
        for gone in abandoned:
            gone.thread.join(max(0.0, deadline - time.monotonic()))
