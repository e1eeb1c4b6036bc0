"""Roles as processes of their own, started through the real ``modelstream`` CLI.

A :class:`Fleet` owns every child it starts. Invariants: each child's output goes to a
log file of its own; :meth:`Fleet.kill` is a crash (SIGKILL: no goodbye to the consumer
groups, nothing flushed) and reaps the child; :meth:`Fleet.restart` starts the same
command again under the same name; :meth:`Fleet.stop` ends every child (SIGTERM, a
bounded wait, then SIGKILL) and reaps it, however the test ended. Only processes this
fleet started are ever signalled, each by its own pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


def modelstream_command() -> list[str]:
    """The ``modelstream`` console script next to this interpreter (else ``python -m``)."""
    script = Path(sys.executable).parent / "modelstream"
    return [str(script)] if script.exists() else [sys.executable, "-m", "modelstream"]


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Child:
    """One running role process."""

    name: str
    argv: list[str]
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    log_path: Path
    started_ms: int

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, chars: int = 1500) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]


@dataclass
class Fleet:
    """Starts ``modelstream --backplane URL ARGS...`` children and owns them."""

    backplane_url: str
    logs: Path
    env: dict[str, str]
    children: dict[str, Child] = field(default_factory=dict)
    retired: list[Child] = field(default_factory=list)

    def start(self, name: str, *args: str) -> Child:
        self.logs.mkdir(parents=True, exist_ok=True)
        argv = [*modelstream_command(), "--backplane", self.backplane_url, *args]
        incarnation = sum(1 for c in self.retired if c.name == name)
        log_path = self.logs / f"{name}.{incarnation}.log"
        log = log_path.open("wb")
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env
        )
        child = Child(name, argv, process, log, log_path, wall_ms())
        self.children[name] = child
        return child

    def kill(self, name: str) -> int:
        """SIGKILL ``name`` (a crash) and reap it; the wall-clock ms of the kill."""
        child = self.children[name]
        at = wall_ms()
        child.process.send_signal(signal.SIGKILL)
        child.process.wait(timeout=10)
        child.log.close()
        self.retired.append(child)
        return at

    def restart(self, name: str) -> Child:
        """Start the killed ``name`` again with the same command line."""
        old = self.children[name]
        assert not old.alive, f"{name} is still running"
        return self.start(name, *old.argv[len(modelstream_command()) + 2 :])

    def dead(self) -> list[str]:
        """Children that exited although nobody killed them."""
        return [c.name for c in self.children.values() if not c.alive]

    def describe_dead(self) -> str:
        return "\n".join(
            f"--- {c.name} (exit {c.process.poll()}):\n{c.tail()}"
            for c in self.children.values()
            if not c.alive
        )

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop every child (SIGTERM, bounded wait, SIGKILL) and reap it; idempotent."""
        for child in self.children.values():
            if child.alive:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in self.children.values():
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait(timeout=10)
            if not child.log.closed:
                child.log.close()


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment plus the children's ``MODELSTREAM_*`` settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSTREAM_")}
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env
