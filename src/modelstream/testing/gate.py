"""A loopback TCP forwarder that a test can shut: connections refused, open ones cut.

:class:`TcpGate` listens on a port of its own and forwards every connection to a target
port. :meth:`TcpGate.shut` closes the listener (a client then gets *connection refused*)
and resets every forwarded connection; :meth:`TcpGate.open` listens on the same port
again. Put it in front of a broker that advertises the gate's port
(``TansuBroker.start(advertised_port=gate.port)``) and every client connection, the
bootstrap one and the ones metadata points to, goes through it: shutting the gate is a
broker that is unreachable while it keeps its data, which a memory-storage broker that
is killed and restarted would not.

Contract: after :meth:`shut` returns, no byte passes in either direction and a new
connection is refused until :meth:`open`; :meth:`close` shuts it for good. Threads, one
per direction of each connection: meant for tests, not for load.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from modelstream.testing.broker import free_port

ACCEPT_TICK_S = 0.1  # how often the accept loop checks whether it was shut


class TcpGate:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:target_port`` while open."""

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._shut = threading.Event()
        self._acceptor: threading.Thread | None = None

    def open(self) -> TcpGate:
        """Listen (again) on :attr:`port` and forward what connects."""
        if self._acceptor is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.settimeout(ACCEPT_TICK_S)
        self._listener, self._shut = listener, threading.Event()
        self._acceptor = threading.Thread(
            target=self._accept, args=(listener, self._shut), name="tcp-gate", daemon=True
        )
        self._acceptor.start()
        return self

    def shut(self) -> None:
        """Refuse new connections and reset the open ones (see the module docstring)."""
        self._shut.set()
        if self._acceptor is not None:
            self._acceptor.join(5)
            self._acceptor = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            cut, self._connections = self._connections, set()
        for sock in cut:
            _reset(sock)

    def close(self) -> None:
        self.shut()

    def __enter__(self) -> TcpGate:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- forwarding -----------------------------------------------------------------------

    def _accept(self, listener: socket.socket, shut: threading.Event) -> None:
        while not shut.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                _reset(client)
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                if shut.is_set():
                    _reset(client)
                    _reset(upstream)
                    return
                self._connections |= {client, upstream}
            # Each pump passes an end of stream on as a half-close; the second to end
            # closes the pair.
            ended = [0]  # directions that ended, under self._lock
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump,
                    args=(source, sink, ended),
                    name="tcp-gate-pump",
                    daemon=True,
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, ended: list[int]) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:  # reset by shut(), or by either end: the pair is gone
            _reset(source)
            _reset(sink)
        with self._lock:
            ended[0] += 1
            last = ended[0] == 2
            if last:
                self._connections -= {source, sink}
        if last:
            _reset(source)
            _reset(sink)


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` at once (an RST, not a polite FIN: the peer sees the link cut)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
