"""Bytewax: score a dataflow's records with the deployed model, swapped live.

Install with ``pip install 'modelstream[bytewax]'``.

**Why Bytewax** of the three Python stream libraries users pick today (checked with
``pip install --dry-run`` beside modelstream's dependencies, late 2026):

* **Bytewax** 0.21 installs as one wheel and changes nothing else; its dataflows run
  in-process (``bytewax.testing.run_main``, ``TestingSource``/``TestingSink``) or as
  ``python -m bytewax.run``, so a flow is tested without a broker, and its connectors
  (Kafka, files, ...) are the user's choice -- our scorer needs none of them.
* **Quix Streams** 3.28 pins ``confluent-kafka<2.13``: pip would *downgrade* our
  confluent-kafka 2.16 (and pydantic, pydantic-settings), so it cannot sit beside us.
* **faust-streaming** 0.15 installs (about 20 packages: aiokafka, aiohttp, mode, ...),
  but it needs a Kafka broker to run an agent, through aiokafka, whose idempotent
  producer fails on the tansu broker our tests use.

The design note that Bytewax's development has slowed holds: this adapter uses only
``operators.flat_map_batch``, the most stable part of its API.

Contract of :func:`score_stream`: records are dicts (column -> value, the features in
training order unless ``columns`` is given; an ``id`` key gives the id of a written
score); each comes out as the same dict plus the scored columns, ``model`` and
``model_version`` (see :mod:`modelstream.scoring.embedded_data`), in order, one batch
of the upstream at a time, scored by the version serving when the batch arrived. The
scorer is made on the first batch of each worker (so a flow module can be imported
without touching the backplane) and waited for up to ``ready_timeout_s``. A scorer made
by the factory belongs to the mapper: it is closed (its registry follower and model
threads end) when the mapper is garbage-collected, or at exit. A scorer passed in is
the caller's to close.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

from modelstream.errors import NotReady
from modelstream.scoring.embedded import EmbeddedScorer

Row = dict[str, Any]
ScorerFactory = Callable[[], EmbeddedScorer]


def score_batch(
    scorer: EmbeddedScorer | ScorerFactory,
    *,
    columns: Sequence[str] | None = None,
    ready_timeout_s: float = 60.0,
) -> Callable[[list[Row]], list[Row]]:
    """A mapper from a batch of dicts to the scored dicts (for ``flat_map_batch``);
    ``scorer`` is a scorer, or a function making one, called once on the first batch."""
    made: list[EmbeddedScorer] = []
    feature_columns = None if columns is None else list(columns)

    def score(rows: list[Row]) -> list[Row]:
        if not made:
            if isinstance(scorer, EmbeddedScorer):
                s = scorer
            else:
                s = scorer()
                weakref.finalize(score, s.close)
            if not s.wait_ready(ready_timeout_s):
                raise NotReady(
                    f"no deployed version of {s.model or 'the champion'} of {s.service} "
                    f"loaded within {ready_timeout_s} s (refused: {s.failures})"
                )
            made.append(s)
        if not rows:
            return []
        scored: list[Row] = made[0].score(rows, columns=feature_columns)
        return scored

    return score


def score_stream(
    step_id: str,
    up: Any,
    scorer: EmbeddedScorer | ScorerFactory,
    *,
    columns: Sequence[str] | None = None,
    ready_timeout_s: float = 60.0,
) -> Any:
    """The ``bytewax.dataflow.Stream`` of scored dicts of ``up`` (see the module doc)."""
    import bytewax.operators as op

    mapper = score_batch(scorer, columns=columns, ready_timeout_s=ready_timeout_s)
    return op.flat_map_batch(step_id, up, mapper)
