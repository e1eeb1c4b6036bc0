"""A child process for the SQLite crash tests (run as a script, never imported by pytest).

``produce DIR TOPIC OUT``: produce batches forever; after each produce call returns,
append ``partition offset value`` per acknowledged record to OUT.

``consume DIR TOPIC GROUP OUT DELAY``: consume in GROUP; append ``R partition offset``
per record to OUT (the "processing"), then commit; append ``A p,p,..`` whenever the
assignment changes. Sleeps DELAY seconds per batch. Exits on SIGTERM after closing.

Every child gives up after ``LIFETIME_S`` so a failed test never leaves it behind.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from modelstream.backplane.records import OutRecord
from modelstream.backplane.sqlite.engine import SqliteBackplane
from modelstream.settings import Settings

LIFETIME_S = 60.0
SESSION_TIMEOUT_MS = 1000


def _settings(directory: str) -> Settings:
    return Settings(backplane=f"sqlite://{directory}", session_timeout_ms=SESSION_TIMEOUT_MS)


def produce(directory: str, topic: str, out: str) -> None:
    backplane = SqliteBackplane(Path(directory), _settings(directory))
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    stop = time.monotonic() + LIFETIME_S
    sequence = 0
    while time.monotonic() < stop:
        batch = [
            OutRecord(b"%d" % n, key=b"k%d" % (n % 97)) for n in range(sequence, sequence + 50)
        ]
        sequence += 50
        delivered = backplane.produce(topic, batch)
        lines = "".join(
            f"{d.partition} {d.offset} {r.value.decode()}\n"
            for d, r in zip(delivered, batch, strict=True)
        )
        os.write(fd, lines.encode())


def consume(directory: str, topic: str, group: str, out: str, delay: float) -> None:
    stopping = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    backplane = SqliteBackplane(Path(directory), _settings(directory))
    consumer = backplane.consumer([topic], group=group)
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    assigned: frozenset[object] = frozenset()
    stop = time.monotonic() + LIFETIME_S
    while not stopping and time.monotonic() < stop:
        records = consumer.poll(max_records=50, timeout=0.05)
        if consumer.assignment() != assigned:
            assigned = consumer.assignment()
            parts = ",".join(str(tp.partition) for tp in sorted(assigned, key=str))
            os.write(fd, f"A {parts}\n".encode())
        if records:
            os.write(fd, "".join(f"R {r.partition} {r.offset}\n" for r in records).encode())
            consumer.commit()
            time.sleep(delay)
    consumer.close()
    backplane.close()


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "produce":
        produce(*args)
    else:
        consume(args[0], args[1], args[2], args[3], float(args[4]))
