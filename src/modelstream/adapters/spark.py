"""Spark: score a (streaming) DataFrame with the deployed model, swapped live.

Install with ``pip install 'modelstream[spark]'`` (pyspark 4, which needs Java 17+).

* :func:`score_partitions` returns the function to hand ``DataFrame.mapInPandas``. In
  each executor's Python worker it makes **one** :class:`EmbeddedScorer
  <modelstream.scoring.embedded.EmbeddedScorer>` per (service, backplane, model,
  write_scores, settings) the first time it runs, and reuses it for every batch and task
  that process runs afterwards (Spark reuses Python workers by default,
  ``spark.python.worker.reuse``). The scorer follows the registry in the background, so a
  model published and deployed while a streaming query runs is used from the next batch
  on, without restarting the query. Each returned row carries ``model_version``.
* :func:`scored_schema` is the output schema ``mapInPandas`` needs: the input's fields,
  then the scored columns of the deployed model (see
  :mod:`modelstream.scoring.embedded_data`), read once from the registry on the driver.
  A later version must keep the output widths (the same classes), or the query fails on
  the first batch it scores, saying the schema does not match.
* :func:`score_dataframe` is ``df.mapInPandas(score_partitions(...), scored_schema(...))``:
  batch or streaming, and inside ``foreachBatch``.
* :func:`foreach_batch` returns the function to hand ``writeStream.foreachBatch``: it
  scores each micro-batch and passes the scored DataFrame to the caller's ``write``.

The executors must reach the backplane: ``sqlite://`` works where they share the
machine's disk (local mode, one host); a cluster needs ``kafka://``. The model store
(large models) must be readable from every executor, as for any scorer.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from modelstream.errors import NotReady, ServiceNotFound
from modelstream.scoring.embedded import EmbeddedScorer
from modelstream.scoring.embedded_data import output_fields
from modelstream.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

# Protocol datatypes to Spark SQL type names (what pandas' dtypes convert to).
_SPARK_TYPES = {
    "BOOL": "BooleanType",
    "INT8": "ByteType",
    "INT16": "ShortType",
    "INT32": "IntegerType",
    "INT64": "LongType",
    "UINT8": "ShortType",
    "UINT16": "IntegerType",
    "UINT32": "LongType",
    "UINT64": "LongType",
    "FP16": "FloatType",
    "FP32": "FloatType",
    "FP64": "DoubleType",
    "BYTES": "StringType",
}

_scorers: dict[tuple[Any, ...], EmbeddedScorer] = {}
_scorers_lock = threading.Lock()


def shared_scorer(
    service: str,
    backplane_url: str,
    *,
    settings: Settings | None = None,
    model: str | None = None,
    write_scores: bool = False,
    ready_timeout_s: float = 60.0,
) -> EmbeddedScorer:
    """This process's embedded scorer for these arguments, made (and waited for) once.

    Raises ``NotReady`` when no version serves within ``ready_timeout_s`` (the next call
    waits again). Every shared scorer is closed when the process exits.
    """
    key = (
        service,
        backplane_url,
        model,
        write_scores,
        None if settings is None else settings.model_dump_json(),
    )
    with _scorers_lock:
        scorer = _scorers.get(key)
        if scorer is None:
            if not _scorers:
                atexit.register(close_shared)
            scorer = _scorers[key] = EmbeddedScorer(
                service,
                backplane=backplane_url,
                settings=settings,
                model=model,
                write_scores=write_scores,
            )
    if not scorer.wait_ready(ready_timeout_s):
        raise NotReady(
            f"no deployed version of {model or 'the champion'} of {service} loaded within "
            f"{ready_timeout_s} s on this executor (failures: {scorer.failures}); check "
            f"the load_failed events on {service}.model-events and that the executor "
            f"reaches {backplane_url}"
        )
    return scorer


def close_shared() -> None:
    """Close every shared scorer of this process (registered with ``atexit``)."""
    with _scorers_lock:
        scorers = list(_scorers.values())
        _scorers.clear()
    for scorer in scorers:
        scorer.close()


def score_partitions(
    service: str,
    backplane_url: str,
    *,
    settings: Settings | None = None,
    model: str | None = None,
    columns: Sequence[str] | None = None,
    write_scores: bool = False,
    ready_timeout_s: float = 60.0,
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The function for ``df.mapInPandas(fn, schema)`` (see the module doc).

    ``columns`` are the feature columns in training order (default: every column but
    ``id``); an ``id`` column gives the ids of written scores.
    """
    feature_columns = None if columns is None else list(columns)

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        scorer = shared_scorer(
            service,
            backplane_url,
            settings=settings,
            model=model,
            write_scores=write_scores,
            ready_timeout_s=ready_timeout_s,
        )
        for batch in batches:
            yield scorer.score(batch, columns=feature_columns)

    return score


def scored_schema(
    base: Any,
    service: str,
    backplane_url: str,
    *,
    settings: Settings | None = None,
    model: str | None = None,
) -> Any:
    """``base`` (a ``StructType``) plus the scored columns of the deployed model."""
    from pyspark.sql import types

    from modelstream.backplane.factory import open_backplane
    from modelstream.models.registry import Registry

    settings = settings or Settings(backplane=backplane_url)
    backplane = open_backplane(backplane_url, settings)
    try:
        registry = Registry(backplane, settings)
        deployment = registry.deployment(service)
        live = deployment.live(model) if model else deployment.champion
        if live is None:
            raise ServiceNotFound(service)
        schema = registry.descriptor(service, live.ref).schema
    finally:
        backplane.close()
    fields = output_fields(schema)
    added = {name for name, _ in fields}
    out = types.StructType([f for f in base.fields if f.name not in added])
    for name, datatype in fields:
        out = out.add(name, getattr(types, _SPARK_TYPES.get(datatype, "StringType"))())
    return out


def score_dataframe(
    df: Any,
    service: str,
    backplane_url: str,
    *,
    schema: Any = None,
    settings: Settings | None = None,
    model: str | None = None,
    columns: Sequence[str] | None = None,
    write_scores: bool = False,
) -> Any:
    """``df`` scored on the executors: ``mapInPandas`` with :func:`score_partitions`;
    ``schema`` defaults to :func:`scored_schema` of ``df``."""
    if schema is None:
        schema = scored_schema(df.schema, service, backplane_url, settings=settings, model=model)
    fn = score_partitions(
        service,
        backplane_url,
        settings=settings,
        model=model,
        columns=columns,
        write_scores=write_scores,
    )
    return df.mapInPandas(fn, schema)


def foreach_batch(
    service: str,
    backplane_url: str,
    write: Callable[[Any, int], None],
    *,
    settings: Settings | None = None,
    model: str | None = None,
    columns: Sequence[str] | None = None,
    write_scores: bool = False,
) -> Callable[[Any, int], None]:
    """The function for ``writeStream.foreachBatch``: each micro-batch is scored on the
    executors, then ``write(scored_df, batch_id)`` runs on the driver. The scored schema
    is read from the registry on the first batch and kept."""
    schema: list[Any] = []

    def run(batch_df: Any, batch_id: int) -> None:
        if not schema:
            schema.append(
                scored_schema(
                    batch_df.schema, service, backplane_url, settings=settings, model=model
                )
            )
        scored = score_dataframe(
            batch_df,
            service,
            backplane_url,
            schema=schema[0],
            settings=settings,
            model=model,
            columns=columns,
            write_scores=write_scores,
        )
        write(scored, batch_id)

    return run
