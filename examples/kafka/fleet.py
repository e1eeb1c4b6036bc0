"""The processes of the example: each role is started through the real ``modelstream`` CLI.

A :class:`Fleet` owns every child it starts. Invariants: every child's output goes to a
log file of its own (``<logs>/<name>.log``); :meth:`Fleet.stop` always ends every child
(SIGTERM, a bounded wait, then SIGKILL) and reaps it, however the run ended; children
stay in the caller's process group, so whoever started the example can also end the
whole tree with one ``killpg``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


def modelstream_command() -> list[str]:
    """The ``modelstream`` console script next to this interpreter (else ``python -m``).

    The console script runs the interpreter directly, so the child's pid is the pid of
    the Python process that runs the role (scorers put it in their id).
    """
    script = Path(sys.executable).parent / "modelstream"
    if script.exists():
        return [str(script)]
    found = shutil.which("modelstream")
    return [found] if found else [sys.executable, "-m", "modelstream"]


@dataclass
class Child:
    """One running role."""

    name: str
    argv: list[str]
    process: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]
    stop_signal: signal.Signals = signal.SIGTERM
    killed_at_ms: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, chars: int = 800) -> str:
        """The end of the child's log (what to read when it misbehaved)."""
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]


@dataclass
class Fleet:
    """Starts roles as ``modelstream --backplane URL ...`` processes; stops them all."""

    backplane_url: str
    logs: Path
    env: dict[str, str]
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, *args: str, stop_signal: signal.Signals = signal.SIGTERM) -> Child:
        """Start ``modelstream --backplane URL ARGS...`` as the child called ``name``.

        ``stop_signal`` is what :meth:`stop` sends first: SIGINT for the commands that
        stop cleanly on Ctrl-C only (``monitor``, ``train --every``).
        """
        self.logs.mkdir(parents=True, exist_ok=True)
        argv = [*modelstream_command(), "--backplane", self.backplane_url, *args]
        log_path = self.logs / f"{name}.log"
        log = log_path.open("wb")
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env
        )
        child = Child(name, argv, process, log_path, log, stop_signal)
        self.children.append(child)
        return child

    def by_name(self, name: str) -> Child:
        for child in self.children:
            if child.name == name:
                return child
        raise KeyError(name)

    def by_pid(self) -> dict[int, str]:
        return {c.pid: c.name for c in self.children}

    def kill(self, name: str) -> Child:
        """SIGKILL a child (a crash: no goodbye to its consumer group) and reap it."""
        child = self.by_name(name)
        child.killed_at_ms = time.time_ns() // 1_000_000
        child.process.send_signal(signal.SIGKILL)
        child.process.wait(timeout=10)
        return child

    def dead(self) -> list[Child]:
        """Children that exited without being killed on purpose."""
        return [c for c in self.children if not c.alive and c.killed_at_ms is None]

    def stop(self, timeout_s: float = 15.0) -> None:
        """Signal every child to stop, wait up to ``timeout_s`` in all, SIGKILL what is left.

        Idempotent; afterwards every child has exited and been reaped.
        """
        for child in self.children:
            if child.alive:
                child.process.send_signal(child.stop_signal)
        deadline = time.monotonic() + timeout_s
        for child in self.children:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait(timeout=5)
            child.log.close()

    def exit_codes(self) -> dict[str, int | None]:
        return {c.name: c.process.poll() for c in self.children}


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment plus ``extra`` (the children's MODELSTREAM_* settings)."""
    env = dict(os.environ)
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env
