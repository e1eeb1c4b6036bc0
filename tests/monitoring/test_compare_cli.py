"""``modelstream compare`` and ``archive ls``/``run`` on a generated SQLite archive."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelstream.archive.archiver import Archiver
from modelstream.backplane.factory import open_backplane
from modelstream.cli.app import app
from modelstream.settings import Settings
from modelstream.wire.requests import decode_request
from tests.archive.helpers import T0, produce, traffic

pytestmark = pytest.mark.integration


def test_compare_and_ls_on_an_archive(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}"
    bp = open_backplane(url, Settings(backplane=url))
    try:
        produce(bp, "svc", traffic("svc", 300, accuracy=(0.93, 0.6)))
        archiver = Archiver(bp, "svc", Settings(backplane=url).archive_root())
        stop = threading.Event()
        worker = threading.Thread(target=archiver.run, args=(stop, 0.1))
        worker.start()
        try:
            while archiver.stats().records < 1500:
                worker.join(0.1)
        finally:
            stop.set()
            worker.join(10)
    finally:
        bp.close()
    assert (tmp_path / "archive" / "service=svc").is_dir()

    runner = CliRunner()
    out = runner.invoke(app, ["--backplane", url, "compare", "svc", "lr@1", "gbm@1", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["winner"] == "gbm@1" and report["n_paired"] == 300
    assert report["test"] == "mcnemar-chi2" and report["p_value"] < 0.01

    table = runner.invoke(
        app, ["--backplane", url, "compare", "svc", "lr@1", "gbm@1", "--from", "2026-01-01"]
    )
    assert table.exit_code == 0, table.output
    assert "accuracy" in table.stdout and "winner" in table.stdout

    listing = runner.invoke(app, ["--backplane", url, "archive", "ls", "--service", "svc"])
    assert listing.exit_code == 0 and "requests" in listing.stdout and "300" in listing.stdout

    bad = runner.invoke(app, ["--backplane", url, "compare", "svc", "lr@1", "gbm", "--json"])
    assert bad.exit_code == 1 and "NAME@VERSION" in bad.stderr
    empty = runner.invoke(
        app, ["--backplane", url, "compare", "svc", "lr@1", "gbm@1", "--from", "2030-01-01"]
    )
    assert empty.exit_code == 1 and "archive ls" in empty.stderr


def test_replay_command(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}"
    bp = open_backplane(url, Settings(backplane=url))
    try:
        produce(bp, "svc", traffic("svc", 5))
        archiver = Archiver(bp, "svc", tmp_path / "archive")
        while archiver.step(timeout=0.2):
            pass
        archiver.close()
    finally:
        bp.close()
    out = CliRunner().invoke(
        app, ["--backplane", url, "replay", "--service", "svc", "--to-service", "svc2"]
    )
    assert out.exit_code == 0, out.output
    assert "replayed 5 requests" in out.stdout
    # A window of event time: request i is at T0 + i minutes; --from is inclusive, --to
    # exclusive, as ISO 8601 or as milliseconds since the epoch.
    window = CliRunner().invoke(
        app,
        ["--backplane", url, "replay", "--service", "svc", "--to-service", "svc3",
         "--from", "2026-01-01T00:01:00Z", "--to", str(T0 + 3 * 60_000)],
    )  # fmt: skip
    assert window.exit_code == 0, window.output
    assert "replayed 2 requests of svc onto svc3.requests" in window.stdout
    bp = open_backplane(url, Settings(backplane=url))
    try:
        consumer = bp.consumer(["svc3.requests"], start="earliest")
        sent = [decode_request(r.value) for r in consumer.poll(100, timeout=1.0)]
        consumer.close()
    finally:
        bp.close()
    assert sorted(r.event_time for r in sent) == [T0 + 60_000, T0 + 2 * 60_000]
    assert sorted(r.inputs[0].data[0] for r in sent) == [1.0, 2.0]  # x[0] is the index
    bad = CliRunner().invoke(
        app, ["--backplane", url, "replay", "--service", "svc", "--from", "yesterday"]
    )
    assert bad.exit_code == 1 and "--from 'yesterday' is not a time" in bad.stderr


@pytest.mark.slow
def test_archive_run_archives_until_terminated(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}"
    bp = open_backplane(url, Settings(backplane=url))
    try:
        produce(bp, "svc", traffic("svc", 5))
    finally:
        bp.close()
    env = {**os.environ, "MODELSTREAM_BACKPLANE": url}
    script = Path(sys.executable).parent / "modelstream"
    proc = subprocess.Popen(
        [str(script), "archive", "run", "--service", "svc", "--flush-seconds", "0.2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        service_dir = tmp_path / "archive" / "service=svc"
        kinds = ("requests", "scores", "results", "labels")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(
            list((service_dir / f"kind={k}").rglob("part-*.parquet")) for k in kinds
        ):
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "archived 25 rows" in out
