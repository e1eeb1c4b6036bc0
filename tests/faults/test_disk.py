"""A SQLite backplane on a directory it cannot write, and on a disk that fills up.

* Unwritable: a backplane directory under a regular file (no chmod trick: the suite runs
  as root, which chmod does not stop) and one on a read-only tmpfs. The CLI prints one
  ``error:`` line naming the path and the fix (no traceback); the Python API raises
  :class:`~modelstream.errors.BackplaneUnavailable` with the same text; a gateway whose
  file system turns read-only answers 503 with the protocol's ``{"error": ...}``.
* Full: a tmpfs of a few MB filled to the brim while producing. ``produce`` raises
  ``BackplaneUnavailable`` saying the disk is full; every acknowledged record is intact
  (``PRAGMA integrity_check`` ok on every file, each record read back equal); once space
  is freed, the same backplane object produces again, without a restart.

The mounts need root (CI runs as root). Each is unmounted in a ``finally``, so a failing
test leaves no mount behind. Without root the tests that mount are skipped, saying why.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from modelstream.backplane.factory import open_backplane
from modelstream.backplane.records import Delivered, OutRecord
from modelstream.cli.app import app
from modelstream.errors import BackplaneUnavailable
from modelstream.gateway.serving import Serving
from modelstream.models.refs import ModelRef
from modelstream.models.registry import Registry
from modelstream.settings import Settings
from modelstream.testing.sklearn import onnx_classifier

pytestmark = pytest.mark.integration

needs_root = pytest.mark.skipif(
    sys.platform != "linux" or os.geteuid() != 0,
    reason="mounting a small tmpfs needs root on Linux (CI runs as root)",
)


@contextmanager
def tmpfs(where: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """A fresh tmpfs of ``size`` mounted on ``where``, unmounted on the way out."""
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path: Path) -> None:
    """Write zeros to ``path`` until its file system has no space left."""
    chunk = b"\0" * (256 * 1024)
    with path.open("wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError:
            pass
    # What the last short write left is too little for SQLite's next page either way.


def cli_error(url: str) -> str:
    result = CliRunner().invoke(app, ["--backplane", url, "topics", "list"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- an unwritable directory ----------------------------------------------------------


def test_a_directory_under_a_regular_file_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    where = tmp_path / "file" / "bp"
    line = cli_error(f"sqlite://{where}")
    assert line.startswith("error: cannot create the sqlite backplane directory")
    assert str(where) in line and "--backplane sqlite:///dir" in line
    with pytest.raises(BackplaneUnavailable, match="choose a writable one"):
        open_backplane(f"sqlite://{where}")


@needs_root
def test_a_read_only_file_system_is_a_one_line_error(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "2M", read_only=True) as mount:
        where = mount / "bp"
        line = cli_error(f"sqlite://{where}")
        assert str(where) in line and "Read-only file system" in line
        with pytest.raises(BackplaneUnavailable, match="choose a writable one"):
            open_backplane(f"sqlite://{where}")


# -- a full disk ----------------------------------------------------------------------


def integrity(directory: Path) -> list[str]:
    """``PRAGMA integrity_check`` of every database file under ``directory``."""
    out = []
    for path in sorted(directory.rglob("*.db")):
        with sqlite3.connect(path) as conn:
            out.append(f"{path.name}: {conn.execute('PRAGMA integrity_check').fetchone()[0]}")
        conn.close()
    return out


@needs_root
def test_a_full_disk_refuses_clearly_keeps_what_was_acknowledged_and_recovers(
    tmp_path: Path, reliability: Any, request: pytest.FixtureRequest
) -> None:
    with tmpfs(tmp_path / "small", "4M") as mount:
        # Ballast: space taken now, given back later to show recovery.
        ballast = mount / "ballast"
        ballast.write_bytes(b"\0" * (1024 * 1024))
        settings = Settings(backplane=f"sqlite://{mount / 'bp'}", default_partitions=2)
        backplane = open_backplane(settings.backplane, settings)
        try:
            acknowledged: list[tuple[Delivered, bytes]] = []
            error: BackplaneUnavailable | None = None
            for i in range(1000):  # 1000 x 16 KiB is far more than the disk holds
                value = f"{i:06d}".encode() * (16 * 1024 // 6)
                try:
                    (delivered,) = backplane.produce("t", [OutRecord(value, str(i).encode())])
                except BackplaneUnavailable as exc:
                    error = exc
                    break
                acknowledged.append((delivered, value))
            assert error is not None, "the 4 MB disk never filled up"
            message = str(error)
            assert "full" in message and str(mount / "bp") in message, message
            assert "\n" not in message
            assert len(acknowledged) > 10

            # Nothing acknowledged is lost or damaged: by the same object, and by a fresh
            # reader of the files.
            assert all(line.endswith(": ok") for line in integrity(mount / "bp"))
            for reader_settings in (None, settings):
                reader = (
                    backplane
                    if reader_settings is None
                    else open_backplane(settings.backplane, settings)
                )
                consumer = reader.consumer(["t"], start="earliest")
                got: dict[tuple[int, int], bytes] = {}
                while batch := consumer.poll(500, timeout=0.2):
                    got.update({(r.partition, r.offset): r.value for r in batch})
                consumer.close()
                if reader is not backplane:
                    reader.close()
                for delivered, value in acknowledged:
                    assert got[(delivered.partition, delivered.offset)] == value

            # Space back: the same backplane produces again, no restart.
            ballast.unlink()
            (delivered,) = backplane.produce("t", [OutRecord(b"after", b"k")])
            assert delivered.offset >= 0
            assert all(line.endswith(": ok") for line in integrity(mount / "bp"))
            reliability.record(
                request.node.nodeid,
                {
                    "backplane": "sqlite",
                    "injected": "a 4 MB tmpfs filled by producing 16 KiB records",
                    "acknowledged": len(acknowledged),
                    "lost": 0,
                    "integrity_check": "ok",
                    "error": message,
                    "recovered_without_restart": True,
                },
            )
        finally:
            backplane.close()


@needs_root
def test_the_gateway_answers_503_on_a_full_disk_and_recovers(tmp_path: Path) -> None:
    model, data = onnx_classifier("logreg", seed=0)
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, 4]}
    body = {"inputs": [{**tensor, "data": [float(v) for v in data.x[0]]}]}
    with tmpfs(tmp_path / "disk", "32M") as mount:
        settings = Settings(backplane=f"sqlite://{mount / 'bp'}", default_partitions=1)
        backplane = open_backplane(settings.backplane, settings)
        registry = Registry(backplane, settings)
        registry.publish("fraud", "lr", model, format="onnx")
        registry.deploy("fraud", ModelRef("lr", 1), deadline_ms=5000)
        serving = Serving(backplane, settings, ["fraud"], host="127.0.0.1", port=0)
        serving.start(load_timeout=30)
        try:
            assert serving.server is not None
            with httpx.Client(base_url=serving.server.url, timeout=15) as client:
                assert client.post("/v2/models/fraud/infer", json=body).status_code == 200
                fill(mount / "ballast")
                try:
                    # SQLite may still reuse free pages of its WAL: send until it must grow.
                    for _ in range(200):
                        response = client.post("/v2/models/fraud/infer", json=body)
                        if response.status_code != 200:
                            break
                finally:
                    (mount / "ballast").unlink()
                assert response.status_code == 503, response.text
                error = response.json()["error"]
                assert str(mount / "bp") in error and "full" in error, error
                # Space back: answered again by the same processes, once the roles'
                # backoff after the failures (at most 5 s, the deadline) has run out.
                statuses = [client.post("/v2/models/fraud/infer", json=body).status_code]
                until = time.monotonic() + 30
                while statuses[-1] != 200 and time.monotonic() < until:
                    time.sleep(0.2)
                    statuses.append(client.post("/v2/models/fraud/infer", json=body).status_code)
                assert statuses[-1] == 200, statuses
                assert set(statuses[:-1]) <= {503, 504}, statuses  # refusals, never a 500
        finally:
            serving.stop()
            backplane.close()
