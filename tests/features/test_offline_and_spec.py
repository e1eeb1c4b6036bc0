"""Offline builds from Parquet and topics, the CLI, and feature sets from YAML."""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from modelstream.archive.archiver import Archiver
from modelstream.backplane.factory import open_backplane
from modelstream.backplane.partitioner import partition_for
from modelstream.cli.app import app
from modelstream.errors import ConfigurationError, FeatureError
from modelstream.features import offline
from modelstream.features.aggregates import Ewma, Mean
from modelstream.features.definitions import Feature, FeatureSet, Hopping, Tumbling
from modelstream.features.records import watermark_record
from modelstream.features.sketches import Lag
from modelstream.features.spec import feature_set_from_yaml, import_feature_set, load_feature_set
from modelstream.settings import Settings
from tests.features.helpers import echo_model, event, request, truck_features

SET = "tests.features.sample_set:TRUCKS"

YAML = """
service: trucks
features:
  name: trucks
  version: 1
  out_of_orderness_ms: 20
  features:
    - {name: temp_mean, field: temp, agg: mean, window: {tumbling: 100}}
    - {name: events, agg: count, window: {tumbling: 100}}
    - {name: temp_trend, field: temp, agg: slope, window: {hopping: [200, 100]}}
    - {name: temp_last, field: temp, agg: last, window: {session: 50}}
"""


def test_yaml_and_import_path_give_the_same_feature_set(tmp_path: Path) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text(YAML)
    assert load_feature_set(path) == truck_features(ooo=20)
    assert import_feature_set("tests.features.sample_set:TRUCKS").ref == "trucks@1"
    with pytest.raises(ConfigurationError, match="not a FeatureSet"):
        import_feature_set("tests.features.sample_set:NOT_A_SET")
    with pytest.raises(ConfigurationError, match="unknown aggregate"):
        feature_set_from_yaml(
            {
                "name": "x",
                "version": 1,
                "features": [
                    {"name": "a", "field": "f", "agg": "median", "window": {"tumbling": 5}}
                ],
            }
        )
    parsed = feature_set_from_yaml(
        {
            "name": "x",
            "version": "2",
            "features": [
                {
                    "name": "e",
                    "field": "f",
                    "agg": {"ewma": {"half_life_ms": 5}},
                    "window": {"tumbling": 5},
                },
                {
                    "name": "l",
                    "field": "f",
                    "agg": {"lag": {"n": 3}},
                    "window": {"hopping": [10, 5]},
                },
            ],
        }
    )
    assert parsed.features[0].agg == Ewma(5) and parsed.features[1].agg == Lag(3)


def test_definitions_are_validated() -> None:
    with pytest.raises(FeatureError, match="multiple of"):
        Feature("a", field="x", agg=Mean(), window=Hopping(100, 30))
    with pytest.raises(FeatureError, match="needs a field"):
        Feature("a", agg=Mean(), window=Tumbling(10))
    with pytest.raises(FeatureError, match="more than once"):
        FeatureSet("s", "1", [Feature("a"), Feature("a")])


def test_parquet_rows_get_features_as_of_their_time(tmp_path: Path) -> None:
    rows = [
        {"entity": "t1", "timestamp": t, "temp": float(t), "label": t // 10}
        for t in range(0, 300, 10)
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "events.parquet")
    fs = truck_features()
    result = offline.build(fs, offline.parquet_entries(tmp_path / "events.parquet", fs, 2))
    by_time = {
        r["event_time"] if "event_time" in r else r["timestamp"]: r for r in result.event_rows
    }
    assert by_time[150]["temp_mean"] == pytest.approx(45.0)  # [0, 100)
    assert by_time[150]["label"] == 15  # the archive's own columns are kept (labels)
    assert math.isnan(by_time[50]["temp_mean"])  # no window has ended by t=50
    assert result.late == []


@pytest.mark.integration
def test_cli_builds_a_training_table_from_a_topic(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'bp'}"
    bp = open_backplane(url, Settings(backplane=url, default_partitions=2))
    bp.produce("trucks.events", [event("t1", t, float(t)) for t in range(0, 300, 10)])
    bp.produce("trucks.events", [request("r1", "t1", 250), event("t1", 5, 1.0)])
    bp.close()
    out = tmp_path / "features.parquet"
    late = tmp_path / "late.parquet"
    runner = CliRunner()
    args = ["--backplane", url, "features", "build", "--service", "trucks", "--from", "topic:"]
    common = ["--feature-set", "tests.features.sample_set:TRUCKS"]
    done = runner.invoke(
        app, [*args, *common, "--out", str(out), "--rows", "requests", "--late", str(late)]
    )
    assert done.exit_code == 0, done.output
    said = " ".join(done.output.split())  # Rich wraps long paths where the width ends
    assert "1 requests rows" in said and "1 late" in said, said
    table = pq.read_table(out).to_pylist()
    assert table[0]["request_id"] == "r1" and table[0]["temp_mean"] == pytest.approx(145.0)
    assert pq.read_table(late).to_pylist()[0]["event_time"] == 5
    bad = runner.invoke(app, [*args, "--out", str(out)])  # no deployment to default to
    assert bad.exit_code == 1 and "no deployment with a feature set" in bad.output


@pytest.mark.integration
def test_cli_builds_from_the_archive_what_it_builds_from_the_topic(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'bp'}"
    settings = Settings(backplane=url, default_partitions=2)
    bp = open_backplane(url, settings)
    bp.create_topic("trucks.events", 2)
    root = tmp_path / "archive"
    archiver = Archiver(bp, "trucks", root, flush_seconds=0.01)
    p1 = partition_for(b"t1", 2)
    batches = [
        [event(f"t{i % 3}", t, float(t % 7)) for i, t in enumerate(range(0, 300, 7))],
        [request("r1", "t1", 250), event("t1", 5, 1.0), request("r2", "t2", 290)],
        # a watermark marker (idle partition): t1's event at 350 is late only because of
        # it, so "2 late" from the archive proves the marker was archived and replayed
        [watermark_record(p1, 500), event("t1", 350, 3.0), request("r3", "t1", 360)],
    ]
    bp.produce("trucks.requests", [request("r9", "t1", 10)])  # archived as kind=requests
    for batch in batches:  # several files, so rows must be put back in log order
        bp.produce("trucks.events", batch)
        for _ in range(3):
            archiver.step(timeout=0.05)
        time.sleep(0.02)
    archiver.close()
    files = sorted((root / "service=trucks" / "kind=events").rglob("*.parquet"))
    assert len(files) >= 3
    shutil.copy(files[0], files[0].with_name("part-9-again.parquet"))  # at-least-once
    bp.close()

    runner = CliRunner()
    (tmp_path / "echo.onnx").write_bytes(echo_model(4))
    for cmd in (
        ["models", "publish", "--service", "trucks", "--name", "echo", str(tmp_path / "echo.onnx")],
        ["deploy", "--service", "trucks", "--champion", "echo@1", "--feature-set", SET],
    ):
        done = runner.invoke(app, ["--backplane", url, *cmd])
        assert done.exit_code == 0, done.output
    tables = {}
    for name, source in (("topic", "topic:"), ("archive", str(root))):
        for rows in ("events", "requests"):
            out = tmp_path / f"{name}-{rows}.parquet"
            # the command (no --spec): the feature set is the deployment's
            build = ["features", "build", "--service", "trucks", "--from", source, "--rows", rows]
            done = runner.invoke(app, ["--backplane", url, *build, "--out", str(out)])
            assert done.exit_code == 0, done.output
            said = " ".join(done.output.split())  # Rich wraps long paths
            assert "trucks@1" in said and "2 late" in said, done.output
            tables[(name, rows)] = [
                {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
                for r in pq.read_table(out).to_pylist()
            ]
    for rows in ("events", "requests"):
        assert tables[("archive", rows)] == tables[("topic", rows)], rows
    events = tables[("archive", "events")]
    assert len(events) == len(batches[0]) + 2  # events only (no requests), once each
    by_id = {r["request_id"]: r for r in tables[("archive", "requests")]}
    assert sorted(by_id) == ["r1", "r2", "r3"]
    assert by_id["r1"]["events"] > 0 and by_id["r1"]["temp_mean"] is not None  # parsed

    args = ["--backplane", url, "features", "build", "--out", str(tmp_path / "x.parquet")]
    for service, source, says in (
        ("trucks", root / "service=trucks" / "kind=requests", "built from its events"),
        ("nope", root, "no deployment with a feature set"),
    ):
        done = runner.invoke(app, [*args, "--service", service, "--from", str(source)])
        assert done.exit_code == 1 and says in done.output, done.output
    done = runner.invoke(app, [*args, "-s", "nope", "--from", str(root), "--feature-set", SET])
    assert done.exit_code == 1 and "holds nothing of service 'nope'" in done.output
