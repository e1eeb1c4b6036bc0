"""How a long-running command ends: SIGINT or SIGTERM sets an event it waits on.

``serve``, ``run ROLE`` and ``serve --processes`` all block until an operator (Ctrl-C),
a process supervisor (systemd, Kubernetes, ``serve --processes`` itself) or a test sends
one of those signals, then stop their roles cleanly. :func:`stop_on_signals` is that one
pattern: inside the block the signals set the event instead of raising; on leaving it the
previous handlers are back, so nothing outlives the command.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_on_signals(stop: threading.Event | None = None) -> Iterator[threading.Event]:
    """Within the block, SIGINT and SIGTERM set ``stop`` (a new event if ``None``), which
    is yielded. Main thread only, as any Python signal handler."""
    event = threading.Event() if stop is None else stop
    previous = {sig: signal.signal(sig, lambda *_: event.set()) for sig in SIGNALS}
    try:
        yield event
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
