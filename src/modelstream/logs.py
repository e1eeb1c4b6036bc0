"""How a role logs a failure it recovers from.

A role keeps running through failures: it retries, resumes from its committed offsets,
or skips what it could not do. What it logs tells the operator which kind it was:

* a :class:`~modelstream.errors.BackplaneError` (a broker down or unreachable, a commit
  refused after a rebalance) is expected in operation: one ``WARNING`` line, with the
  error's own message, which says what to check;
* anything else is a defect or a surprise: an ``ERROR`` with its traceback, worth a bug
  report.

``docs/operators.md`` tells operators the same.
"""

from __future__ import annotations

import logging

from modelstream.errors import BackplaneError


def log_recovered(logger: logging.Logger, exc: BaseException, what: str, *args: object) -> None:
    """Log ``exc``, caught while doing ``what`` (a %-format with ``args``), by its kind:
    a backplane failure as one warning line ``"<what>: <exc>"``, anything else as an
    error with its traceback."""
    if isinstance(exc, BackplaneError):
        logger.warning(f"{what}: %s", *args, exc)
    else:
        logger.error(what, *args, exc_info=exc)
