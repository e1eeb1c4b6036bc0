"""Count a group's members with the classic ``DescribeGroups`` request, spoken directly.

Why: librdkafka 2.16 describes groups with the new ``ConsumerGroupDescribe`` API
(KIP-848) and does not fall back to the classic one when a broker answers it with an
empty member list, which tansu 0.6 does for every classic group. ``topics describe``
must still show how many members a group has, so when the admin API reports none this
module asks the group's coordinator over a plain socket (``FindCoordinator`` v0, then
``DescribeGroups`` v0; both are in every Kafka-protocol broker). It only works over
PLAINTEXT, which is all a ``kafka://`` URL configures; any failure counts as "unknown"
and the caller keeps the admin API's answer.
"""

from __future__ import annotations

import socket
import struct

_FIND_COORDINATOR = 10
_DESCRIBE_GROUPS = 15


def _string(value: str) -> bytes:
    data = value.encode()
    return struct.pack(">h", len(data)) + data


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return int(value)

    def string(self) -> str:
        size = self.take(">h")
        text = self.data[self.at : self.at + max(size, 0)].decode()
        self.at += max(size, 0)
        return text

    def blob(self) -> None:
        self.at += max(self.take(">i"), 0)


def _call(host: str, port: int, api: int, body: bytes, timeout: float) -> _Reader:
    header = struct.pack(">hhi", api, 0, 1) + _string("modelstream")
    request = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", _recv(sock, 4))[0]
        reader = _Reader(_recv(sock, size))
    reader.take(">i")  # correlation id
    return reader


def _recv(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def count_members(brokers: str, group: str, timeout: float) -> int | None:
    """The number of members of ``group``, or ``None`` when it cannot be found out."""
    try:
        host, _, port = brokers.split(",", maxsplit=1)[0].rpartition(":")
        found = _call(host, int(port), _FIND_COORDINATOR, _string(group), timeout)
        if found.take(">h") != 0:
            return None
        found.take(">i")  # coordinator node id
        c_host, c_port = found.string(), found.take(">i")
        body = struct.pack(">i", 1) + _string(group)
        answer = _call(c_host, c_port, _DESCRIBE_GROUPS, body, timeout)
        if answer.take(">i") != 1 or answer.take(">h") != 0:
            return None
        for _ in range(3):  # group id, state, protocol type
            answer.string()
        answer.string()  # protocol
        return answer.take(">i")
    except (OSError, struct.error, ValueError, UnicodeDecodeError):
        return None
