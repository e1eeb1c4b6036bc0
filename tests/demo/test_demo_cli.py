"""``modelstream demo`` end to end, as the README's first command runs it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.integration
@pytest.mark.slow
def test_demo_serves_swaps_under_load_and_loses_nothing(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelstream.cli",
            "--backplane",
            f"sqlite:///{tmp_path}/bp",
            "demo",
            "--duration",
            "6",
            "--rate",
            "40",
            "--deadline-ms",
            "200",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"},
    )
    out = done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    sent = int(re.search(r"requests sent\s+│\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    lost = int(re.search(r"lost\s+│\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    assert sent >= 200
    assert lost == 0
    # The champion was retrained and swapped in while traffic flowed: both versions answered.
    assert re.search(r"answers by gbm@1\s+│\s+[1-9]", out), out
    assert re.search(r"answers by gbm@2\s+│\s+[1-9]", out), out
