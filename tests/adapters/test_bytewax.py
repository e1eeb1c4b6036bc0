"""A Bytewax dataflow, run in-process: records scored by the deployed version, and a
version deployed while the flow runs used for the records after it."""

from __future__ import annotations

import gc
import importlib.util
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bytewax.operators as op
import numpy as np
import pytest

from modelstream.backplane.factory import open_backplane
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.scoring.embedded import EmbeddedScorer
from modelstream.settings import Settings

from .conftest import COLUMNS, Versions, World

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bytewax" / "score_csv.py"


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location("score_csv_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.02)


def rows(x: np.ndarray, start: int) -> list[dict[str, Any]]:
    return [
        {"id": f"r{start + i}", **dict(zip(COLUMNS, map(float, row), strict=True))}
        for i, row in enumerate(x)
    ]


def test_a_flow_scores_with_the_version_deployed_at_each_batch(
    versions: Versions, tmp_path: Path
) -> None:
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink, TestingSource, run_main

    from modelstream.adapters.bytewax import score_stream

    settings = Settings(backplane="memory://", model_store_dir=str(tmp_path / "store"))
    bp = open_backplane("memory://", settings)
    w = World("memory://", settings, bp, Registry(bp, settings))
    w.registry.publish(w.service, "lr", versions.models[0], format="onnx")
    w.registry.deploy(w.service, ModelRef("lr", 1))
    scorer = EmbeddedScorer(w.service, backplane=bp, settings=settings)
    out: list[dict[str, Any]] = []
    first, second = rows(versions.x[:20], 0), rows(versions.x[20:40], 20)

    def source() -> Iterator[dict[str, Any]]:
        yield from first
        # Mid-stream: once the first rows are out, a new version is published and
        # deployed; the flow is not restarted.
        wait_until(lambda: len(out) == len(first), 30, "the first rows to be scored")
        w.registry.publish(w.service, "lr", versions.models[1], format="onnx")
        w.registry.deploy(w.service, ModelRef("lr", 2))
        wait_until(lambda: scorer.serving == ModelRef("lr", 2), 30, "lr@2 to serve")
        yield from second

    flow = Dataflow("score")
    up = op.input("in", flow, TestingSource(source(), batch_size=5))
    scored = score_stream("score", up, scorer)
    op.output("out", scored, TestingSink(out))
    try:
        run_main(flow)
    finally:
        scorer.close()
        bp.close()

    assert [r["id"] for r in out] == [f"r{i}" for i in range(40)]
    assert {r["model_version"] for r in out[:20]} == {1}
    assert {r["model_version"] for r in out[20:]} == {2}
    for version, part, x in ((1, out[:20], versions.x[:20]), (2, out[20:], versions.x[20:40])):
        got = np.array([[r["probability_0"], r["probability_1"]] for r in part])
        np.testing.assert_allclose(got, versions.expected(version, x), atol=1e-5)
        assert [r["f0"] for r in part] == [float(v) for v in x[:, 0]]


@pytest.mark.integration
def test_the_example_flow_scores_a_csv_file(
    sqlite_world: World, versions: Versions, tmp_path: Path
) -> None:
    from bytewax.testing import run_main

    w = sqlite_world
    w.registry.publish(w.service, "lr", versions.models[0], format="onnx")
    w.registry.deploy(w.service, ModelRef("lr", 1))
    csv = tmp_path / "in.csv"
    lines = [",".join(["id", *COLUMNS])] + [
        ",".join([f"r{i}", *map(str, row)]) for i, row in enumerate(versions.x)
    ]
    csv.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    flow = load_example().build_flow(
        csv, out, service=w.service, backplane=w.url, settings=w.settings
    )
    run_main(flow)

    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in scored] == [f"r{i}" for i in range(len(versions.x))]
    assert {r["model_version"] for r in scored} == {1}
    got = np.array([[r["probability_0"], r["probability_1"]] for r in scored])
    np.testing.assert_allclose(got, versions.expected(1, versions.x), atol=1e-5)
    # The scorer the flow made is closed with the flow: no follower keeps polling.
    del flow
    gc.collect()
    wait_until(
        lambda: not [t for t in threading.enumerate() if w.service in t.name],
        10,
        "the flow's scorer threads to end",
    )
