"""The TCP gate the broker-outage test shuts: forwards, refuses, cuts, reopens."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from modelstream.testing.gate import TcpGate


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A loopback echo server; its port."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    server.close()


def roundtrip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        got = b""
        while data := sock.recv(4096):
            got += data
        return got


def test_forwards_refuses_when_shut_cuts_open_connections_and_reopens(echo_port: int) -> None:
    with TcpGate(echo_port) as gate:
        assert roundtrip(gate.port, b"hello" * 1000) == b"hello" * 1000
        held = socket.create_connection(("127.0.0.1", gate.port), timeout=2)
        held.sendall(b"ping")
        assert held.recv(4) == b"ping"

        gate.shut()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", gate.port), timeout=2)
        # the connection open before is cut: reset, or closed with nothing more to read
        try:
            held.sendall(b"ping")
            assert held.recv(4) == b""
        except (ConnectionResetError, BrokenPipeError):
            pass
        held.close()

        gate.open()
        assert roundtrip(gate.port, b"again") == b"again"
