"""Roles as processes of their own, started through the real ``modelstream`` CLI.

A :class:`Fleet` owns every child it starts; the fault tests and ``examples/kafka`` both
run on it. Invariants:

* every child's output goes to a log file of its own (``<logs>/<name>.log``, then
  ``<name>.<n>.log`` for the n-th restart), and every start and kill is a line of
  ``<logs>/fleet.log`` (local time to the millisecond, as the roles log): with the roles'
  own lines it times a restart;
* :meth:`Fleet.kill` is a crash (SIGKILL: no goodbye to the consumer groups, nothing
  flushed) and reaps the child; :meth:`Fleet.restart` starts the same command again
  under the same name;
* :meth:`Fleet.stop` ends every child (its stop signal, a bounded wait, then SIGKILL) and
  reaps it, however the caller ended; it is idempotent;
* only processes this fleet started are ever signalled, each by its own pid, and they
  stay in the caller's process group, so one ``killpg`` also ends the whole tree.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

from modelstream.backplane.records import now_ms


def modelstream_command() -> list[str]:
    """The ``modelstream`` console script next to this interpreter (else ``python -m``).

    The console script runs the interpreter directly, so a child's pid is the pid of the
    Python process that runs the role (scorers put it in their id).
    """
    script = Path(sys.executable).parent / "modelstream"
    return [str(script)] if script.exists() else [sys.executable, "-m", "modelstream"]


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without its ``MODELSTREAM_*`` settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSTREAM_")}
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Child:
    """One running (or ended) role process."""

    name: str
    argv: list[str]
    process: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]
    started_ms: int
    stop_signal: signal.Signals = signal.SIGTERM
    killed_at_ms: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, chars: int = 1500) -> str:
        """The end of the child's log (what to read when it misbehaved)."""
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]


@dataclass
class Fleet:
    """Starts ``modelstream --backplane URL ARGS...`` children and owns them."""

    backplane_url: str
    logs: Path
    env: dict[str, str]
    children: dict[str, Child] = field(default_factory=dict)  # the latest of each name
    retired: list[Child] = field(default_factory=list)  # earlier incarnations

    def start(self, name: str, *args: str, stop_signal: signal.Signals = signal.SIGTERM) -> Child:
        """Start ``modelstream --backplane URL ARGS...`` as the child called ``name``.

        ``stop_signal`` is what :meth:`stop` sends first.
        """
        self.logs.mkdir(parents=True, exist_ok=True)
        argv = [*modelstream_command(), "--backplane", self.backplane_url, *args]
        incarnation = sum(1 for c in self.retired if c.name == name)
        log_path = self.logs / (f"{name}.{incarnation}.log" if incarnation else f"{name}.log")
        log = log_path.open("wb")
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env
        )
        child = Child(name, argv, process, log_path, log, now_ms(), stop_signal)
        self.children[name] = child
        self._journal(f"start {name} pid {child.pid}: {' '.join(args)}")
        return child

    def _journal(self, line: str) -> None:
        stamp = datetime.now().isoformat(timespec="milliseconds")  # local, as roles log
        with (self.logs / "fleet.log").open("a") as journal:
            journal.write(f"{stamp} {line}\n")

    def by_name(self, name: str) -> Child:
        return self.children[name]

    def by_pid(self) -> dict[int, str]:
        """Every pid this fleet started, current and retired, to its child's name."""
        return {c.pid: c.name for c in (*self.retired, *self.children.values())}

    def kill(self, name: str) -> Child:
        """SIGKILL ``name`` (a crash) and reap it; the child records when."""
        child = self.children[name]
        child.killed_at_ms = now_ms()
        child.process.send_signal(signal.SIGKILL)
        child.process.wait(timeout=10)
        child.log.close()
        self._journal(f"killed {name} pid {child.pid}")
        return child

    def restart(self, name: str) -> Child:
        """Start the ended ``name`` again with the same command line."""
        old = self.children[name]
        if old.alive:
            raise RuntimeError(f"{name} is still running: kill it before restarting it")
        self.retired.append(old)
        return self.start(
            name, *old.argv[len(modelstream_command()) + 2 :], stop_signal=old.stop_signal
        )

    def dead(self) -> list[Child]:
        """Children that exited although nobody killed them."""
        return [c for c in self.children.values() if not c.alive and c.killed_at_ms is None]

    def describe_dead(self) -> str:
        return "\n".join(
            f"--- {c.name} (exit {c.process.poll()}):\n{c.tail()}" for c in self.dead()
        )

    def exit_codes(self) -> dict[str, int | None]:
        return {c.name: c.process.poll() for c in self.children.values()}

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop every child (stop signal, bounded wait, SIGKILL) and reap it; idempotent."""
        for child in self.children.values():
            if child.alive:
                child.process.send_signal(child.stop_signal)
        deadline = time.monotonic() + timeout_s
        for child in self.children.values():
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait(timeout=10)
            if not child.log.closed:
                child.log.close()
