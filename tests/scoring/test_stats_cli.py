"""``modelstream models stats S`` computes the scorer's figures from the scores topic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from modelstream.backplane.records import OutRecord
from modelstream.backplane.sqlite.engine import SqliteBackplane
from modelstream.cli import stats as stats_cli
from modelstream.cli.app import app
from modelstream.models.refs import ModelRef
from modelstream.scoring.stats import StatsBook
from modelstream.settings import Settings
from modelstream.wire.scores import Score
from modelstream.wire.tensors import array_to_tensor


def rounded(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return round(value, 9) if isinstance(value, float) else value


@pytest.mark.integration
def test_stats_from_the_scores_topic_match_the_in_process_book(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite://{tmp_path / 'bp'}"
    bp = SqliteBackplane(tmp_path / "bp", Settings(backplane=url))
    out = (array_to_tensor("label", np.zeros(1, np.int64)),)
    scores = [
        Score(
            f"r{i}",
            "gbm",
            1 + i % 2,
            out if i % 5 else None,
            None if i % 5 else "boom",
            0.1 * (i + 1),
            1_700_000_000_000 + i,
            "champion",
            4,
        )
        for i in range(40)
    ]
    try:
        bp.produce("svc.scores", [OutRecord(s.encode(), s.request_id.encode()) for s in scores])
    finally:
        bp.close()
    book = StatsBook()
    book.record_scores(scores)
    want = {str(s.ref): s.to_json() for s in book.snapshot()}

    runner = CliRunner()
    result = runner.invoke(app, ["--backplane", url, "models", "stats", "svc", "--json"])
    assert result.exit_code == 0, result.output
    got = {row["ref"]: row for row in json.loads(result.output)}
    assert rounded(got) == rounded(want)  # partitions interleave: sums differ in the ulp
    assert got["gbm@1"]["errors"] == 4 and got["gbm@2"]["invocations"] == 20

    # The console took its width when it was imported (from COLUMNS, which pytest-xdist
    # sets to 80): a wide terminal is set on it, not in the environment.
    monkeypatch.setattr(stats_cli.console, "width", 160)
    table = runner.invoke(app, ["--backplane", url, "models", "stats", "svc"])
    assert table.exit_code == 0 and "gbm@2" in table.output and "invocations" in table.output
    missing = runner.invoke(app, ["--backplane", url, "models", "stats", "nope"])
    assert missing.exit_code == 1 and "nope" in missing.output
    assert ModelRef("gbm", 1) in {s.ref for s in book.snapshot()}
