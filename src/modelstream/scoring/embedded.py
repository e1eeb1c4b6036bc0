"""The embedded scorer: model serving as one step of someone else's pipeline.

:class:`EmbeddedScorer` is bound to a service and a backplane. In the background it
follows the service's ``models`` and ``deployment`` topics
(:class:`~modelstream.models.follower.RegistryFollower`) and keeps one version loaded:
the deployed champion, or the live version of a named model. It scores data handed to
it in the caller's thread (:meth:`EmbeddedScorer.score`, :meth:`EmbeddedScorer.score_arrays`)
with whatever version is deployed at that moment. No requests topic, no rendezvous.

Contract -- the same as the scorer role (:mod:`modelstream.scoring.scorer`):

* **Loading.** A new version is fetched, its sha256 (and signature where the deployment
  requires one) verified, loaded, validated against its descriptor's schema and warmed
  on a sample input (:func:`~modelstream.scoring.loading.prepare`) on the follower's
  thread while the old version keeps serving.
* **Swaps** happen between two calls, never inside one: a call reads the serving version
  once, and every row it returns names that version (``model_version``).
* **A failed load** keeps the old version serving; it is reported in
  :attr:`EmbeddedScorer.failures`, logged, and (``report_events``) written to
  ``<service>.model-events`` as ``load_failed``, once per descriptor digest.
* **Statistics** per version (:meth:`EmbeddedScorer.stats`, a
  :class:`~modelstream.scoring.stats.StatsBook`): one invocation per row scored.
* **A model that raises or exceeds** ``timeout_s`` makes the call raise
  :class:`~modelstream.errors.ScoringError` (rows counted as errors); the scorer stays
  usable. Calls from several threads run one at a time on the model.
* With ``write_scores`` every row becomes one :class:`~modelstream.wire.scores.Score` on
  ``<service>.scores`` (key = its id: the ``id`` column's value, else a generated
  ``<scorer id>-<n>``), so the monitor and ``compare`` see it like any other score.
  Scores are durable when the call returns.
* If the deployment stops naming the followed model, the last loaded version keeps
  serving (a warning is logged): a pipeline is not broken by an undeploy.

How tables map to model inputs and outputs back to columns: :mod:`.embedded_data`.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from modelstream.backplane.port import Backplane
from modelstream.backplane.records import now_ms
from modelstream.errors import ModelError, NotReady, ScoringError
from modelstream.models.deployment import Deployment, LiveModel
from modelstream.models.descriptor import ModelDescriptor
from modelstream.models.follower import RegistryFollower
from modelstream.models.refs import ModelRef
from modelstream.scoring import events
from modelstream.scoring.embedded_data import (
    Arrays,
    arrays_for,
    empty_outputs,
    read_input,
    score_records,
    write_output,
)
from modelstream.scoring.loading import close_quietly, prepare, registry_source
from modelstream.scoring.runner import ModelRunner
from modelstream.scoring.slot import ActiveModel, ModelSlot
from modelstream.scoring.stats import StatsBook, VersionStats
from modelstream.settings import Settings
from modelstream.wire.topics import ServiceTopics, check_name

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadFailure:
    """A version that was refused; the version serving before kept serving."""

    ref: ModelRef
    error_type: str
    error: str
    at: int  # ms since the epoch


class EmbeddedScorer:
    """Scores data in-process with the deployed version of one model (see the module doc).

    ``backplane`` is a :class:`Backplane` (left open by :meth:`close`) or a URL (opened
    here with ``settings`` and closed by :meth:`close`). ``model`` names the live model
    to follow; ``None`` follows whichever model is champion. Following starts at once;
    use :meth:`wait_ready` before the first call, or as a context manager.
    """

    def __init__(
        self,
        service: str,
        *,
        backplane: Backplane | str,
        settings: Settings | None = None,
        write_scores: bool = False,
        model: str | None = None,
        id_column: str | None = "id",
        timeout_s: float | None = 60.0,
        warm_timeout_s: float = 30.0,
        report_events: bool = True,
    ) -> None:
        self.topics = ServiceTopics(service)
        self.service = service
        self.model = None if model is None else check_name("model", model)
        self.write_scores = write_scores
        self.id_column = id_column
        self.warm_timeout_s = warm_timeout_s
        self.report_events = report_events
        self.id = f"embedded-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        if isinstance(backplane, str):
            from modelstream.backplane.factory import open_backplane

            self.settings = settings or Settings(backplane=backplane)
            self.backplane = open_backplane(backplane, self.settings)
            self._owns_backplane = True
        else:
            self.settings = settings or Settings()
            self.backplane = backplane
            self._owns_backplane = False
        self._slot = ModelSlot(model or "champion")
        self._runner = ModelRunner(timeout_s, name=f"embedded-{service}")
        self._stats = StatsBook()
        self._failed: dict[ModelRef, str] = {}  # ref -> sha256 that failed to load
        self._failures: list[LoadFailure] = []
        self._warned: set[str] = set()
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._closed = False
        try:
            if write_scores:
                self.backplane.create_topic(self.topics.scores)
            self._follower: RegistryFollower | None = RegistryFollower(
                self.backplane, service, self._on_change
            )
            self._follower.start()
        except BaseException:
            if self._owns_backplane:
                self.backplane.close()
            raise

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> EmbeddedScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop following, close the loaded models (and the backplane if opened here).
        Idempotent; a call after it raises ``NotReady``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            follower, self._follower = self._follower, None
        if follower is not None:
            follower.stop()
        for model in self._slot.clear():
            close_quietly(model)
        self._runner.close(wait_s=5.0)
        if self._owns_backplane:
            self.backplane.close()

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a version to serve; whether one does."""
        return self._slot.wait_ready(timeout)

    @property
    def serving(self) -> ModelRef | None:
        """The version serving now, or ``None`` before the first successful load."""
        active = self._slot.current()
        return None if active is None else active.ref

    @property
    def swaps(self) -> int:
        """How many versions were installed (the first load counts)."""
        return self._slot.swaps

    @property
    def failures(self) -> list[LoadFailure]:
        """Versions refused since the start, oldest first."""
        with self._lock:
            return list(self._failures)

    def stats(self) -> list[VersionStats]:
        """Figures per version of the rows this scorer scored (one invocation per row)."""
        return self._stats.snapshot()

    # -- scoring -----------------------------------------------------------------------

    def score(self, data: Any, *, columns: Sequence[str] | None = None) -> Any:
        """Score ``data`` with the serving version; the same kind of data comes back.

        A pandas DataFrame, an Arrow Table or RecordBatch, or a list of dicts comes back
        with the output columns, ``model`` and ``model_version`` added; a numpy array
        gives a :class:`~modelstream.scoring.embedded_data.ScoredArrays`. ``columns``
        picks the feature columns (in training order); by default every column but the
        id column is a feature. Raises ``NotReady`` before a version serves,
        ``InvalidRequest`` when the data does not fit the model, ``ScoringError`` when
        the model fails.
        """
        active = self._active()
        source = read_input(data, active.schema, id_column=self.id_column, columns=columns)
        outputs = self._run(active, source.arrays, source.rows, source.ids)
        return write_output(source, outputs, active.ref)

    def score_arrays(
        self, inputs: Mapping[str, npt.ArrayLike], *, ids: Sequence[str] | None = None
    ) -> tuple[dict[str, npt.NDArray[Any]], ModelRef]:
        """The outputs by name for ``inputs`` by name, and the version that computed them
        (``ids``: one per row, for the written scores)."""
        active = self._active()
        arrays = arrays_for(inputs, active.schema)
        rows = int(next(iter(arrays.values())).shape[0]) if arrays else 0
        return self._run(active, arrays, rows, list(ids) if ids is not None else None), active.ref

    def _active(self) -> ActiveModel:
        active = self._slot.current()  # read once: the whole call uses this version
        if active is not None and not self._closed:
            return active
        if self._closed:
            raise NotReady(f"the embedded scorer of {self.service} was closed; make a new one")
        what = f"model {self.model!r}" if self.model else "the champion"
        last = self.failures[-1:]
        why = f" (last refused: {last[0].ref}: {last[0].error})" if last else ""
        raise NotReady(
            f"no version of {what} of service {self.service} is loaded yet{why}; deploy one "
            f"(`modelstream deploy --service {self.service} ...`) and call wait_ready(timeout)"
        )

    def _run(
        self, active: ActiveModel, arrays: Arrays, rows: int, ids: list[str] | None
    ) -> dict[str, npt.NDArray[Any]]:
        self._close_retired()
        if rows == 0:
            return empty_outputs(active.schema)
        if ids is not None and len(ids) != rows:
            raise ScoringError(f"{len(ids)} ids for {rows} rows; give one id per row")
        try:
            outputs, elapsed = self._runner.run(active.model, arrays)
            outputs = {name: np.asarray(value) for name, value in outputs.items()}
            for name, array in outputs.items():
                if array.ndim == 0 or array.shape[0] != rows:
                    raise ScoringError(
                        f"output {name!r} has shape {list(array.shape)} for {rows} rows; a "
                        "model must return one row per input row"
                    )
        except ScoringError as exc:
            at = now_ms()
            self._stats.record(active.ref, 0.0, at=at, ok=False, n=rows, role=active.role)
            if self.write_scores:
                self._write(active, rows, ids, None, str(exc), 0.0, at)
            raise
        at = now_ms()
        self._stats.record(active.ref, elapsed, at=at, n=rows, role=active.role)
        if self.write_scores:
            self._write(active, rows, ids, outputs, None, elapsed, at)
        return outputs

    def _write(  # noqa: PLR0917 - private: one call site of each kind
        self,
        active: ActiveModel,
        rows: int,
        ids: list[str] | None,
        outputs: dict[str, npt.NDArray[Any]] | None,
        error: str | None,
        latency_ms: float,
        at: int,
    ) -> None:
        if ids is None:
            with self._lock:
                ids = [f"{self.id}-{next(self._ids)}" for _ in range(rows)]
        records = score_records(active.ref, active.role, ids, outputs, error, latency_ms, at)
        self.backplane.produce(self.topics.scores, records)

    def _close_retired(self) -> None:
        busy = self._runner.busy_models
        for model in self._slot.take_retired():
            if not any(model is b for b in busy):  # a hung call still holds it otherwise
                close_quietly(model)

    # -- following the registry --------------------------------------------------------

    def _target(self, deployment: Deployment) -> LiveModel | None:
        return deployment.live(self.model) if self.model else deployment.champion

    def _on_change(
        self, deployment: Deployment | None, descriptors: dict[ModelRef, ModelDescriptor]
    ) -> None:
        """React to a registry change (on the follower's thread, one call at a time)."""
        if deployment is None or self._closed:
            return
        live = self._target(deployment)
        if live is None:
            self._warn_once(
                f"revision {deployment.revision}",
                "%s: revision %d deploys no %s; %s keeps serving",
                self.service,
                deployment.revision,
                self.model or "champion",
                self.serving,
            )
            return
        active = self._slot.current()
        if active is not None and active.ref == live.ref:
            if active.role != live.role.value:
                self._slot.set_role(live.role.value)
            return
        descriptor = descriptors.get(live.ref)
        if descriptor is None:
            self._warn_once(
                str(live.ref), "%s: waiting for the descriptor of %s", self.service, live.ref
            )
            return
        if self._failed.get(live.ref) == descriptor.sha256:
            return
        source = registry_source(self.settings)
        try:
            new, timings = prepare(
                descriptor, deployment, live.role.value, source, self.warm_timeout_s
            )
        except ModelError as exc:
            self._refused(live, descriptor, exc)
            return
        old = self._slot.swap(new)
        log.info("embedded %s: %s now serving (was %s)", self.service, new.ref, old and old.ref)
        previous = None if old is None else old.ref.version
        self._emit(events.SWAPPED, new.ref, new.role, previous, timings, None)

    def _refused(self, live: LiveModel, descriptor: ModelDescriptor, exc: ModelError) -> None:
        self._failed[live.ref] = descriptor.sha256
        failure = LoadFailure(live.ref, type(exc).__name__, str(exc), now_ms())
        with self._lock:
            self._failures.append(failure)
        log.warning(
            "embedded %s: %s refused, %s keeps serving: %s",
            self.service,
            live.ref,
            self.serving,
            exc,
        )
        self._emit(events.LOAD_FAILED, live.ref, live.role.value, None, None, exc)

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def _emit(  # noqa: PLR0917 - private
        self,
        kind: str,
        ref: ModelRef,
        role: str | None,
        previous: int | None,
        timings: dict[str, float] | None,
        error: Exception | None,
    ) -> None:
        if not self.report_events:
            return
        serving = self.serving
        events.emit(
            self.backplane,
            self.service,
            kind,
            ref,
            scorer=self.id,
            serving=None if serving is None else serving.version,
            role=role,
            previous=previous,
            timings=timings,
            error=error,
        )
