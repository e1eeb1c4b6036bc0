"""``modelstream serve --processes``: every role a child process, supervised by one parent.

One interpreter runs one thread of Python at a time, so ``serve``'s roles share one core.
With ``--processes`` the parent starts ``modelstream run ROLE`` children instead, one per
role (``--scorer-processes N`` scorer children, which split the partitions of each lane's
consumer group), and only supervises them. Contract:

* **Start order.** The stream roles start first; the gateway starts once each of them
  has its models loaded and owns partitions (each child touches its ``--ready-file``
  when :meth:`~modelstream.gateway.serving.Serving.start` has returned), or after
  ``ready_timeout_s`` with a warning. So, as in one process, the gateway does not take
  requests that nothing would score.
* **Restarts.** A child that exits while the parent is not stopping is started again,
  after a back-off that doubles from ``backoff_s`` up to ``MAX_BACKOFF_S`` and resets once
  a child has lived ``HEALTHY_AFTER_S``. A child that fails ``max_quick_failures`` times
  in a row within ``HEALTHY_AFTER_S`` of its start is misconfigured, not unlucky: the
  parent stops every child and raises :class:`~modelstream.errors.ConfigurationError`.
  Nothing is lost meanwhile: a restarted role resumes from its group's committed offsets.
* **Stop.** SIGINT or SIGTERM to the parent sends SIGTERM to every child (each stops its
  roles cleanly), waits up to ``stop_timeout_s``, then kills whatever is left. The
  children's output is the parent's (stdout and stderr are inherited).
* The backplane must be shared between processes (``sqlite://`` or ``kafka://``).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from modelstream.errors import ConfigurationError
from modelstream.gateway.lifecycle import stop_on_signals
from modelstream.gateway.loop import LoopConfig

log = logging.getLogger(__name__)

HEALTHY_AFTER_S = 30.0  # a child that lived this long failed by bad luck, not set-up
MAX_BACKOFF_S = 30.0


@dataclass(frozen=True)
class RoleProcess:
    """A child to run: ``name`` for logs, ``args`` after ``modelstream --backplane URL``.

    ``waits`` is true for stream roles, which the gateway waits for (see the contract)."""

    name: str
    args: tuple[str, ...]
    waits: bool = True


@dataclass
class _Running:
    role: RoleProcess
    process: subprocess.Popen[bytes]
    ready_file: Path
    started: float
    quick_failures: int = 0
    backoff_s: float = 0.0
    restart_at: float | None = None
    restarts: int = 0


class Supervisor:
    """Runs ``roles`` as children of this process until stopped (see the module doc)."""

    def __init__(
        self,
        backplane_url: str,
        roles: Sequence[RoleProcess],
        *,
        backoff_s: float = 1.0,
        max_quick_failures: int = 3,
        ready_timeout_s: float = 90.0,
        stop_timeout_s: float = 20.0,
        poll_s: float = 0.2,
    ) -> None:
        if backplane_url.startswith("memory:"):
            raise ConfigurationError(
                "serve --processes needs a backplane the processes share: memory:// lives "
                "in one process; use sqlite://DIR or kafka://HOST:PORT"
            )
        self.url = backplane_url
        self.roles = tuple(roles)
        self.backoff_s = backoff_s
        self.max_quick_failures = max_quick_failures
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._running: dict[str, _Running] = {}
        self._dir = Path(tempfile.mkdtemp(prefix="modelstream-serve-"))

    # -- lifecycle ----------------------------------------------------------------------

    def run(self) -> None:
        """Start every role, supervise until SIGINT/SIGTERM, then stop every child."""
        with stop_on_signals(self._stop):
            try:
                self.start()
                while not self._stop.wait(self.poll_s):
                    self.check()
            finally:
                self.stop()

    def start(self) -> None:
        """Start the stream roles, wait (bounded) until they are ready, then the rest."""
        for role in self.roles:
            if role.waits:
                self._spawn(role)
        deadline = time.monotonic() + self.ready_timeout_s
        for running in list(self._running.values()):
            while not running.ready_file.exists() and not self._stop.is_set():
                self.check()  # a child that dies at start-up is restarted meanwhile
                if time.monotonic() > deadline:
                    name, waited = running.role.name, self.ready_timeout_s
                    log.warning("%s not ready after %.0f s", name, waited)
                    break
                time.sleep(self.poll_s)
        for role in self.roles:
            if not role.waits:
                self._spawn(role)

    def stop(self) -> None:
        """SIGTERM every child, wait up to ``stop_timeout_s``, then SIGKILL (idempotent)."""
        self._stop.set()
        for running in self._running.values():
            if running.process.poll() is None:
                running.process.terminate()
        deadline = time.monotonic() + self.stop_timeout_s
        for running in self._running.values():
            try:
                running.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time: killed", running.role.name)
                running.process.kill()
                running.process.wait()

    def pids(self) -> dict[str, int]:
        """The pid of each role's current child."""
        return {name: r.process.pid for name, r in self._running.items()}

    def restarts(self) -> dict[str, int]:
        """How many times each role's child was started again."""
        return {name: r.restarts for name, r in self._running.items()}

    # -- supervision --------------------------------------------------------------------

    def check(self) -> None:
        """Notice children that ended; restart them once their back-off has passed."""
        now = time.monotonic()
        for running in self._running.values():
            if self._stop.is_set():
                return
            if running.restart_at is not None:
                if now >= running.restart_at:
                    self._spawn(running.role)
                continue
            code = running.process.poll()
            if code is None:
                continue
            lived = now - running.started
            if lived < HEALTHY_AFTER_S:
                running.quick_failures += 1
                running.backoff_s = min(MAX_BACKOFF_S, max(self.backoff_s, running.backoff_s * 2))
            else:
                running.quick_failures, running.backoff_s = 0, self.backoff_s
            if running.quick_failures >= self.max_quick_failures:
                self.stop()
                raise ConfigurationError(
                    f"role {running.role.name} exited {running.quick_failures} times within "
                    f"{HEALTHY_AFTER_S:.0f} s of starting (last exit code {code}); its output "
                    "above says why: fix that and start serve again"
                )
            log.warning(
                "%s exited with code %s after %.1f s; restarting in %.1f s",
                running.role.name,
                code,
                lived,
                running.backoff_s,
            )
            running.restart_at = now + running.backoff_s

    def _spawn(self, role: RoleProcess) -> None:
        ready = self._dir / f"{role.name}.ready"
        ready.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "modelstream.cli", "--backplane", self.url, *role.args]
        if role.waits:
            argv += ["--ready-file", str(ready)]
        process = subprocess.Popen(argv)
        running = self._running.get(role.name)
        if running is None:
            self._running[role.name] = _Running(role, process, ready, time.monotonic())
            return
        # A restart: the same record, so the failure streak and back-off carry over.
        running.process, running.started, running.restart_at = process, time.monotonic(), None
        running.restarts += 1


def serve_roles(
    services: Sequence[str],
    *,
    host: str | None,
    port: int | None,
    featurizer: bool,
    monitor: bool,
    archiver: bool,
    loop: LoopConfig,
    scorer_processes: int = 1,
) -> list[RoleProcess]:
    """The children of ``serve --processes``: what one ``serve`` process would run."""
    picked = tuple(arg for s in services for arg in ("--service", s))
    roles = [RoleProcess("rendezvous", ("run", "rendezvous", *picked))]
    roles += [
        RoleProcess(f"scorer-{n}", ("run", "scorer", *picked)) for n in range(scorer_processes)
    ]
    if featurizer:
        roles.append(RoleProcess("featurizer", ("run", "featurizer", *picked)))
    if monitor:
        roles.append(RoleProcess("monitor", ("run", "monitor", *picked)))
    if archiver:
        roles.append(RoleProcess("archiver", ("run", "archiver", *picked)))
    if loop.train is not None or loop.promotes:
        roles.append(RoleProcess("trainer", ("run", "trainer", *picked, *_loop_args(loop))))
    address = [*(("--host", host) if host else ()), *(("--port", str(port)) if port else ())]
    roles.append(RoleProcess("gateway", ("run", "gateway", *picked, *address), waits=False))
    return roles


def _loop_args(loop: LoopConfig) -> list[str]:
    """``loop``'s training and promotion options, as ``run trainer`` takes them."""
    args: list[str] = []
    if loop.train is not None:
        args += ["--train", loop.train]
    if loop.train_every_labels is not None:
        args += ["--train-every-labels", str(loop.train_every_labels)]
    if loop.train_every_seconds is not None:
        args += ["--train-every-seconds", str(loop.train_every_seconds)]
    if loop.train_window_seconds is not None:
        args += ["--train-window", str(loop.train_window_seconds)]
    if loop.auto_promote is not None:
        args.append("--auto-promote" if loop.auto_promote else "--no-auto-promote")
    return [*args, "--min-labels", str(loop.min_labels), "--alpha", str(loop.alpha)]
