"""The closed loop of the embedded default: archive, retrain, promote -- in one process.

:class:`LoopConfig` says what :class:`~modelstream.gateway.serving.Serving` runs beside
the gateway, rendezvous and scorers: the archiver (every request, score, result and
label to Parquet), the monitor, and optionally a trainer and automatic promotion. With
all of them on, one process keeps a service's models good: labels arrive, the monitor
measures every live version, the trainer retrains every ``train_every_labels`` labels
(or ``train_every_seconds``), publishes a new version of the champion's name and deploys
it as a challenger, and the :class:`Promoter` promotes a challenger that beats the
champion with significance on at least ``min_labels`` labelled requests.

This module holds the two roles that have no thread of their own elsewhere:

* :class:`ArchiverThread` drives an :class:`~modelstream.archive.archiver.Archiver` in a
  thread; it flushes every ``archive_flush_seconds`` (small by default, so the trainer
  and the promoter, which read the archive, see recent data);
* :class:`Promoter` runs :func:`~modelstream.rendezvous.promotion.auto_promote` over the
  archive of each service every ``promote_every_seconds`` (and at once when
  :meth:`Promoter.poke` is called, e.g. after a trainer published). Every promotion is a
  deployment record whose reason states the evidence; verdicts are kept in
  :attr:`Promoter.verdicts` and logged. A service with no challenger is not judged.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from modelstream.backplane.port import Backplane
from modelstream.errors import ConfigurationError, ModelstreamError, ServiceNotFound
from modelstream.models.deployment import Role
from modelstream.models.registry import Registry
from modelstream.monitoring.config import MonitorConfig
from modelstream.threads import ended
from modelstream.training.config import TrainerConfig

if TYPE_CHECKING:
    # Imported where they run: a role that neither archives, promotes nor trains (a
    # scorer, the gateway) then never imports pandas and pyarrow, and starts faster.
    from modelstream.rendezvous.promotion import PromotionVerdict
    from modelstream.training.trainer import Trainer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoopConfig:
    """What runs beside serving, and how often (validated on construction).

    * ``archive_flush_seconds``: the archiver writes what it buffered at least this often.
    * ``monitor``: the monitor's windows and thresholds (``None``: the defaults).
    * ``train``: the training function ``module:function`` (``None``: no trainer), run
      every ``train_every_labels`` new labels and/or every ``train_every_seconds``, on the
      labelled archive of the last ``train_window_seconds`` of event time (``None``: all
      of it). The new version is published under the champion's name and deployed as a
      challenger. ``trainer`` replaces all of that with a full :class:`TrainerConfig`.
    * ``auto_promote``: run the :class:`Promoter` (``None``: when a trainer runs), every
      ``promote_every_seconds``, promoting at significance ``alpha`` on at least
      ``min_labels`` paired labelled requests, judged over the last
      ``promote_window_seconds`` of the archive (``None``: all of it).
    """

    archive_flush_seconds: float = 1.0
    monitor: MonitorConfig | None = None
    train: str | None = None
    train_every_labels: int | None = 500
    train_every_seconds: float | None = None
    train_window_seconds: float | None = None
    trainer: TrainerConfig | None = None
    auto_promote: bool | None = None
    min_labels: int = 200
    alpha: float = 0.05
    promote_every_seconds: float = 5.0
    promote_window_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.archive_flush_seconds <= 0 or self.promote_every_seconds <= 0:
            raise ConfigurationError(
                "archive_flush_seconds and promote_every_seconds must be positive"
            )
        if self.min_labels < 1 or not 0 < self.alpha < 1:
            raise ConfigurationError("auto-promotion needs min_labels >= 1 and 0 < alpha < 1")
        if self.train is not None and self.trainer is None:
            self.trainer_config()  # a bad trigger or window fails now, not in a thread

    def trainer_config(self) -> TrainerConfig | None:
        """The trainer's configuration, or ``None`` when no trainer runs."""
        if self.trainer is not None:
            return self.trainer
        if self.train is None:
            return None
        if self.train_every_labels is None and self.train_every_seconds is None:
            raise ConfigurationError(
                "a trainer needs a trigger: set train_every_labels (--train-every-labels) "
                "and/or train_every_seconds"
            )
        window = self.train_window_seconds
        return TrainerConfig(
            function=self.train,
            every_labels=self.train_every_labels,
            every_seconds=self.train_every_seconds,
            window_ms=None if window is None else int(window * 1000),
            deploy_as_challenger=True,
        )

    @property
    def promotes(self) -> bool:
        """Whether the promoter runs (``auto_promote``, or by default when training)."""
        if self.auto_promote is None:
            return self.trainer_config() is not None
        return self.auto_promote


class ArchiverThread:
    """One service's archiver in a thread of its own: :meth:`start`, then :meth:`stop`
    (which flushes, commits and leaves the group)."""

    def __init__(
        self,
        backplane: Backplane,
        service: str,
        root: Path,
        flush_seconds: float,
        retry_max_s: float,
    ) -> None:
        from modelstream.archive.archiver import Archiver

        self.archiver = Archiver(
            backplane, service, root, flush_seconds=flush_seconds, retry_max_s=retry_max_s
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"archiver-{service}", daemon=True)
        self.failure: BaseException | None = None

    @property
    def service(self) -> str:
        return self.archiver.service

    def _run(self) -> None:
        try:
            self.archiver.run(self._stop, poll_timeout=0.2)
        except BaseException as exc:  # reported by stop(); the thread must not die silently
            self.failure = exc
            log.exception("archiver of %s stopped", self.service)

    def start(self) -> ArchiverThread:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop, flushing what is buffered (bounded join); idempotent."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        elif self._thread.ident is None:  # never started: still leave the group
            self.archiver.close()


class Promoter:
    """Periodic automatic promotion of the services' challengers (see the module doc)."""

    def __init__(
        self,
        registry: Registry,
        archive_root: Path,
        services: list[str],
        config: LoopConfig,
    ) -> None:
        self._registry = registry
        from modelstream.archive.reader import ArchiveReader

        self._reader = ArchiveReader(archive_root)
        self.services = list(services)
        self.config = config
        self.verdicts: dict[str, PromotionVerdict] = {}
        self.promotions: list[PromotionVerdict] = []
        self.failures = 0
        self._stop = threading.Event()
        self._poke = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> list[PromotionVerdict]:
        """Judge every service that has a challenger now; return the verdicts."""
        out = []
        for service in self.services:
            verdict = self.judge(service)
            if verdict is not None:
                out.append(verdict)
        return out

    def judge(self, service: str) -> PromotionVerdict | None:
        """Judge (and maybe promote) one service; ``None`` when it has no challenger."""
        try:
            deployment = self._registry.deployment(service)
        except ServiceNotFound:
            return None
        if not any(m.role in (Role.CHALLENGER, Role.SHADOW) for m in deployment.models):
            return None
        window = self.config.promote_window_seconds
        start = None if window is None else datetime.now(UTC) - timedelta(seconds=window)
        from modelstream.rendezvous.promotion import auto_promote

        try:
            verdict = auto_promote(
                self._registry,
                self._reader,
                service,
                min_labels=self.config.min_labels,
                alpha=self.config.alpha,
                start=start,
            )
        except ModelstreamError as exc:
            self.failures += 1
            log.error("auto-promotion of %s failed: %s", service, exc)
            return None
        self.verdicts[service] = verdict
        if verdict.deployment is not None:
            self.promotions.append(verdict)
            log.warning("%s: %s", service, verdict.reason)
        else:
            log.info("%s: %s", service, verdict.reason)
        return verdict

    def poke(self) -> None:
        """Judge at once rather than at the next period (e.g. after a trainer published)."""
        self._poke.set()

    def start(self) -> Promoter:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="promoter", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._poke.wait(self.config.promote_every_seconds)
            self._poke.clear()
            if self._stop.is_set():
                return
            try:
                self.step()
            except Exception:  # a bad archive file must not end the loop; it is logged
                self.failures += 1
                log.exception("auto-promotion failed")

    def stop(self, timeout: float = 30.0) -> None:
        """End the loop (bounded join); idempotent."""
        self._stop.set()
        self._poke.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


class TrainerThread:
    """A :class:`~modelstream.training.trainer.Trainer`'s triggers in a thread, poking the
    promoter after every published version so a challenger is judged without delay."""

    def __init__(self, trainer: Trainer, promoter: Promoter | None) -> None:
        self.trainer = trainer
        self._promoter = promoter
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def service(self) -> str:
        return self.trainer.service

    def start(self) -> TrainerThread:
        """Start the trigger thread; the training stack is imported first (see
        :func:`~modelstream.training.trainer.import_training_stack`)."""
        if self._thread is None:
            from modelstream.training.trainer import import_training_stack

            import_training_stack()
            self._thread = threading.Thread(
                target=self._loop, name=f"trainer-{self.service}", daemon=True
            )
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                result = self.trainer.step(timeout=0.2)
            except Exception:  # step already logs operator errors; anything else too
                self.trainer.failures += 1
                log.exception("training cycle of %s failed", self.service)
                result = None
            if result is not None:
                log.warning("trainer of %s: %s", self.service, result.reason)
                if result.published is not None and self._promoter is not None:
                    self._promoter.poke()
            self._stop.wait(0.1)

    def stop(self, timeout: float = 60.0) -> None:
        """Stop (waiting up to ``timeout`` for a running cycle), close the trainer."""
        self._stop.set()
        if not ended(self._thread, timeout, f"the trainer of {self.service}"):
            return  # a thread still running keeps what it uses (see modelstream.threads)
        self._thread = None
        self.trainer.stop()
