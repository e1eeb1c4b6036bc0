"""Training on Spark: the same training function, over an archive larger than one machine.

Install with ``pip install 'modelstream[spark]'`` (pyspark 4, which needs Java 17+).

**Approach.** The archive is plain hive-partitioned Parquet
(``<root>/service=S/kind=K/date=D/*.parquet``), so Spark reads it as it is. The expensive
part of a cycle -- scanning every file of the window, pruning dates, deduplicating the
at-least-once rows, keeping the latest label per request, and joining requests with
labels -- runs on the Spark cluster. Only the result, the labelled training window with
its input columns, comes back to the driver, through Arrow (``toArrow``), where the
*same* training function receives the *same* DataFrame as on one machine
(:mod:`.frame`) and the rest of the cycle is the ordinary one (:mod:`.cycle`): ONNX
conversion, holdout evaluation against the champion, publishing as data on
``<service>.models``. A model is one estimator, so per-partition training
(``mapInPandas``) would yield many models; we do not do that. For windows too large for
the driver, set ``sample`` (a fraction of rows, taken by Spark before collecting).

Differences from :class:`~modelstream.archive.reader.ArchiveReader.joined`: labels are
joined **by request id only** (labels by entity and event time are ignored), and the
champion's archived scores are not read, so its holdout predictions come from
rescoring the holdout with the loaded champion.

:class:`SparkTrainer` is a :class:`~modelstream.training.trainer.Trainer` whose cycles
read through :func:`spark_window`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from modelstream.backplane.port import Backplane
from modelstream.clock import Clock
from modelstream.errors import ConfigurationError
from modelstream.settings import Settings
from modelstream.training.config import TrainerConfig
from modelstream.training.trainer import Trainer


def local_session(app: str = "modelstream-trainer", cores: int = 2) -> Any:
    """A local Spark session (UTC, no UI) for one machine or a test."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigurationError(
            "pyspark is not installed: pip install 'modelstream[spark]' (needs Java 17+)"
        ) from None
    return (
        SparkSession.builder.master(f"local[{cores}]")
        .appName(app)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.shuffle.partitions", str(cores))
        .getOrCreate()
    )


def _kind(spark: Any, root: Path, service: str, kind: str) -> Any:
    base = root / f"service={service}" / f"kind={kind}"
    if not base.is_dir():
        return None
    return spark.read.option("basePath", str(base)).parquet(str(base))


def spark_window(
    spark: Any,
    root: Path,
    service: str,
    start_ms: int | None,
    end_ms: int | None,
    *,
    sample: float | None = None,
) -> pd.DataFrame:
    """The labelled window as ``ArchiveReader.joined(labelled_only=True)`` gives it (wide
    ``input_i`` / ``f_<name>`` columns, ``label``, ``label_text``), computed by Spark."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F  # noqa: N812 - the pyspark convention

    requests, labels = (
        _kind(spark, root, service, "requests"),
        _kind(spark, root, service, "labels"),
    )
    if requests is None or labels is None:
        return pd.DataFrame(columns=["request_id", "event_time", "label", "label_text"])
    if start_ms is not None:
        start = datetime.fromtimestamp(start_ms / 1000, UTC)
        requests = requests.where(
            (F.col("date") >= start.date().isoformat()) & (F.col("event_time") >= F.lit(start))
        )
    if end_ms is not None:
        end = datetime.fromtimestamp(end_ms / 1000, UTC)
        requests = requests.where(
            (F.col("date") <= end.date().isoformat()) & (F.col("event_time") < F.lit(end))
        )
    # Duplicates come from at-least-once archiving and are equal rows: keep any one.
    requests = requests.dropDuplicates(["request_id"])
    latest = Window.partitionBy("request_id").orderBy(F.col("labelled_at").desc())
    labels = (
        labels.where(F.col("request_id").isNotNull())
        .withColumn("_rank", F.row_number().over(latest))
        .where(F.col("_rank") == 1)
        .select("request_id", "label", "label_text", "labelled_at")
    )
    joined = requests.join(labels, "request_id", "inner")
    if sample is not None:
        joined = joined.sample(fraction=sample, seed=0)
    width = joined.select(F.max(F.size("x")).alias("w")).first()
    inputs = [F.col("x")[i].alias(f"input_{i}") for i in range(int((width and width["w"]) or 0))]
    names = sorted(
        row["k"]
        for row in joined.select(F.explode(F.map_keys("features")).alias("k")).distinct().collect()
    )
    features = [F.col("features")[n].alias(f"f_{n}") for n in names]
    columns = ["request_id", "entity", "event_time", "label", "label_text", "labelled_at"]
    wide = joined.select(*columns, *inputs, *features)
    # Through Arrow without pyspark's pandas layer, which warns about pandas 3.
    frame: pd.DataFrame = wide.toArrow().to_pandas()
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    return frame


class SparkTrainer(Trainer):
    """A :class:`Trainer` whose cycles read the archive with ``spark`` (see the module)."""

    def __init__(
        self,
        backplane: Backplane,
        settings: Settings,
        service: str,
        config: TrainerConfig,
        *,
        spark: Any,
        sample: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(backplane, settings, service, config, clock=clock)
        root = settings.archive_root()

        def source(name: str, start_ms: int | None, end_ms: int | None) -> pd.DataFrame:
            return spark_window(spark, root, name, start_ms, end_ms, sample=sample)

        self.source = source
