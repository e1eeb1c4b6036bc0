"""Ending a role's background thread before closing what it uses.

A role's consumer, store or database connection belongs to the thread that polls it.
Closing one while that thread is still inside a call is a use-after-free in the native
library beneath (librdkafka, or SQLite through ``sqlite3``): the process dies with a
segmentation fault instead of an error. So every ``stop()`` that closes such a resource
goes through :func:`ended` first, and closes only when it returns true.

Contract of :func:`ended`: it joins ``thread`` for at most ``timeout`` seconds and says
whether the thread is no longer running (never started counts as ended, and so does
the calling thread itself, which cannot be inside a call of what it closes). When the thread
outlives the timeout, a warning names it and the caller must leave its resources open:
they are released when the thread finishes, or at process exit for a daemon thread.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


def ended(thread: threading.Thread | None, timeout: float | None, what: str) -> bool:
    """Join ``thread`` (at most ``timeout`` s); whether it has ended (see the module doc)."""
    if thread is None or thread.ident is None or thread is threading.current_thread():
        return True  # (from its own thread: not inside a call of what it would close)
    thread.join(timeout)
    if not thread.is_alive():
        return True
    log.warning(
        "%s did not stop within %.1f s; its resources stay open until it ends "
        "(a model or callback is blocking it: check the thread dump)",
        what,
        timeout if timeout is not None else float("inf"),
    )
    return False
