"""The trainer's records on ``<service>.model-events``.

They use the scorer's :class:`~modelstream.scoring.events.ModelEvent` format (so the
timeline and alerts read them alike), with these ``event`` values:

* ``retrain_published``: ``version`` was published; ``previous`` is the version of the
  same name before it (null for a first one);
* ``retrain_rejected``: the candidate that would have been ``version`` was not published;
  ``error`` says why (e.g. its holdout accuracy against the champion's and the margin);
* ``retrain_skipped``: no training happened (too few labelled rows); ``error`` says why.

``scorer`` holds the trainer's id (``trainer:<host>-<pid>``) and ``timings_ms`` the time
of each step of the cycle (read, train, convert, evaluate, publish). ``serving`` and
``role`` are null: a trainer serves nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from modelstream.backplane.port import Backplane
from modelstream.models.refs import ModelRef
from modelstream.scoring import events

PUBLISHED = "retrain_published"
REJECTED = "retrain_rejected"
SKIPPED = "retrain_skipped"
ONLINE_PUBLISHED = "online_published"


def trainer_id(kind: str = "trainer") -> str:
    """An id for this trainer process, for the ``scorer`` field of its events."""
    return f"{kind}:{socket.gethostname()}-{os.getpid()}"


def emit(
    backplane: Backplane,
    service: str,
    event: str,
    *,
    model: str,
    version: int,
    previous: object,
    error: str | None,
    timings_ms: Mapping[str, float],
    who: str,
) -> None:
    """Write one trainer event (``previous`` may be a ModelRef; its version is used).

    The scorers' :func:`modelstream.scoring.events.emit` writes it, so a failed write is
    logged, never raised.
    """
    before = getattr(previous, "version", previous)
    events.emit(
        backplane,
        service,
        event,
        ModelRef(model, version),
        scorer=who,
        serving=None,
        previous=before if isinstance(before, int) else None,
        timings=timings_ms,
        error=error,
    )
