"""Spark Structured Streaming on a local session: a model deployed mid-stream is used
from the next micro-batches on, without restarting the query."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelstream.models.refs import ModelRef
from modelstream.wire.scores import decode_score
from modelstream.wire.topics import ServiceTopics

from .conftest import COLUMNS, Versions, World

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    # pyspark warns about pandas 3 on every mapInPandas; the conversions used here work.
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]

INPUT_SCHEMA = "id string, f0 double, f1 double, f2 double, f3 double"
ROWS_PER_FILE = 10


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from modelstream.training.spark import local_session

    # The executors' Python workers must run this interpreter (where modelstream is).
    saved = {k: os.environ.get(k) for k in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    session = local_session(app="modelstream-adapters", cores=1)
    try:
        yield session
    finally:
        session.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def write_file(folder: Path, index: int, x: np.ndarray) -> list[str]:
    """One JSON-lines file of ``ROWS_PER_FILE`` rows, ids ``<index>-<row>``; its ids."""
    rows = [
        {"id": f"{index}-{i}", **dict(zip(COLUMNS, map(float, x[i % len(x)]), strict=True))}
        for i in range(ROWS_PER_FILE)
    ]
    tmp = folder.parent / f".{index}.json"
    tmp.write_text("\n".join(json.dumps(r) for r in rows))
    tmp.rename(folder / f"part-{index:04d}.json")  # atomic: Spark never sees half a file
    return [r["id"] for r in rows]


def frame(df: Any) -> pd.DataFrame:
    """A Spark DataFrame's rows in pandas (``toPandas`` trips over pandas 3 here)."""
    return pd.DataFrame([r.asDict() for r in df.collect()], columns=df.columns)


def deploy_v2_mid_stream(
    w: World,
    versions: Versions,
    query: Any,
    folder: Path,
    files: list[list[str]],
    versions_of: Callable[[list[str]], set[int]],
) -> None:
    """Deploy lr@2 while ``query`` runs; feed one file per micro-batch until a batch is
    scored by lr@2, then one more; the query must still be running, without a restart."""
    w.registry.publish(w.service, "lr", versions.models[1], format="onnx")
    w.registry.deploy(w.service, ModelRef("lr", 2))
    deadline = time.monotonic() + 45
    while True:
        files.append(write_file(folder, len(files), versions.x))
        query.processAllAvailable()
        if 2 in versions_of(files[-1]):
            break
        assert time.monotonic() < deadline, "lr@2 was never used by the running query"
    files.append(write_file(folder, len(files), versions.x))  # after the swap was seen
    query.processAllAvailable()
    assert query.isActive and query.exception() is None


def check_outputs(rows: pd.DataFrame, versions: Versions) -> None:
    for version, group in rows.groupby("model_version"):
        x = group[COLUMNS].to_numpy(np.float32)
        want = versions.expected(int(version), x)
        got = group[["probability_0", "probability_1"]].to_numpy()
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert (group["prediction"].to_numpy() == want.argmax(axis=1)).all()


def test_a_model_deployed_mid_stream_is_picked_up_by_map_in_pandas(
    spark: Any, sqlite_world: World, versions: Versions, tmp_path: Path
) -> None:
    from modelstream.adapters.spark import score_partitions, scored_schema

    w = sqlite_world
    w.registry.publish(w.service, "lr", versions.models[0], format="onnx")
    w.registry.deploy(w.service, ModelRef("lr", 1))
    folder = tmp_path / "in"
    folder.mkdir()
    stream = spark.readStream.schema(INPUT_SCHEMA).option("maxFilesPerTrigger", 1).json(str(folder))
    schema = scored_schema(stream.schema, w.service, w.url, settings=w.settings)
    assert schema.fieldNames()[-5:] == [
        "prediction",
        "probability_0",
        "probability_1",
        "model",
        "model_version",
    ]
    scored = stream.mapInPandas(score_partitions(w.service, w.url, settings=w.settings), schema)
    query = scored.writeStream.format("memory").queryName("scored").start()
    files: list[list[str]] = []
    try:
        files.append(write_file(folder, 0, versions.x))
        query.processAllAvailable()

        def versions_of(ids: list[str]) -> set[int]:
            table = frame(spark.sql("select id, model_version from scored"))
            return set(table[table["id"].isin(ids)]["model_version"])

        deploy_v2_mid_stream(w, versions, query, folder, files, versions_of)
        rows = frame(spark.sql("select * from scored"))
    finally:
        query.stop()

    assert len(rows) == ROWS_PER_FILE * len(files)
    version_of_file = [set(rows[rows["id"].isin(ids)]["model_version"]) for ids in files]
    assert version_of_file[0] == {1}
    assert version_of_file[-1] == {2} and version_of_file[-2] == {2}
    first_v2 = next(i for i, v in enumerate(version_of_file) if 2 in v)
    assert all(v == {2} for v in version_of_file[first_v2 + 1 :])  # no way back to lr@1
    assert set(rows["model"]) == {"lr"}
    check_outputs(rows, versions)


def test_foreach_batch_scores_each_micro_batch_and_writes_scores(
    spark: Any, sqlite_world: World, versions: Versions, tmp_path: Path
) -> None:
    from modelstream.adapters.spark import foreach_batch

    w = sqlite_world
    w.service = "fb"
    w.registry.publish(w.service, "lr", versions.models[0], format="onnx")
    w.registry.deploy(w.service, ModelRef("lr", 1))
    folder = tmp_path / "in"
    folder.mkdir()
    batches: list[tuple[int, pd.DataFrame]] = []

    def write(df: Any, batch_id: int) -> None:
        batches.append((batch_id, frame(df)))

    def versions_of(ids: list[str]) -> set[int]:
        rows = pd.concat([df for _, df in batches])
        return set(rows[rows["id"].isin(ids)]["model_version"])

    stream = spark.readStream.schema(INPUT_SCHEMA).option("maxFilesPerTrigger", 1).json(str(folder))
    run = foreach_batch(w.service, w.url, write, settings=w.settings, write_scores=True)
    query = stream.writeStream.foreachBatch(run).start()
    files: list[list[str]] = []
    try:
        files.append(write_file(folder, 0, versions.x))
        query.processAllAvailable()
        assert versions_of(files[0]) == {1}

        deploy_v2_mid_stream(w, versions, query, folder, files, versions_of)
    finally:
        query.stop()

    assert [batch_id for batch_id, _ in batches] == list(range(len(files)))
    assert versions_of(files[-1]) == {2}
    rows = pd.concat([df for _, df in batches])
    assert sorted(rows["id"]) == sorted(i for ids in files for i in ids)
    check_outputs(rows, versions)
    consumer = w.backplane.consumer([ServiceTopics(w.service).scores], start="earliest")
    try:
        scores = [decode_score(r.value) for r in consumer.poll(1000, timeout=5.0)]
        while more := consumer.poll(1000, timeout=0.5):
            scores += [decode_score(r.value) for r in more]
    finally:
        consumer.close()
    # Each written score names the version that scored its row in the batch.
    version_of = dict(zip(rows["id"], rows["model_version"], strict=True))
    assert sorted(s.request_id for s in scores) == sorted(version_of)
    assert all(s.ok and s.ref == f"lr@{version_of[s.request_id]}" for s in scores)
