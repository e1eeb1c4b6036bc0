"""``modelstream demo`` end to end, as the README's first command runs it (CI's 20 s form).

At 20 s on two shared cores the story is compressed (the drift comes at 40%): the test
checks what a user would see in that time -- requests served over HTTP with features
per truck, the drift, the monitor's alert, nothing lost, a summary with the quality
before and after the drift and the late-data count. Retraining and promotion with
significance need more labelled traffic than 20 s gives on a busy machine; the default
two-minute run shows them. The same checks run on the embedded SQLite backplane and on the
suite's Kafka-protocol broker (``--backplane kafka://...``).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from .base_install import EXTRA_ONLY

BASE_INSTALL = Path(__file__).with_name("base_install.py")


def _row(out: str, name: str) -> str:
    found = re.search(rf"{re.escape(name)}\s+│\s+([^│]+)│", out)
    assert found, f"no {name!r} row in:\n{out}"
    return found.group(1).strip()


def _check_story(
    backplane: str, *, base_install: bool = False, extra_env: dict[str, str] | None = None
) -> None:
    # As a base install runs it (no extras), or as this environment has it.
    runner = [str(BASE_INSTALL)] if base_install else ["-m", "modelstream.cli"]
    done = subprocess.run(
        [
            sys.executable,
            *runner,
            "--backplane",
            backplane,
            "demo",
            "--no-browser",
            "--duration",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={"COLUMNS": "120", "PATH": "/usr/bin:/bin", **(extra_env or {})},
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "Traceback" not in done.stderr
    assert re.search(r"dashboard: http://127\.0\.0\.1:\d+/", out), out
    # The story's milestones, in order, as one line each when stdout is not a terminal.
    steps = [m.group(1) for m in re.finditer(r"^\s*[\d.]+s (\w+): ", out, re.MULTILINE)]
    for milestone in ("served", "drifted", "alerted"):
        assert milestone in steps, out
    assert steps.index("served") < steps.index("drifted") < steps.index("alerted"), out
    assert "failures are now preceded by rising vibration" in out
    # The summary: everything sent got an HTTP answer; the fleet's late data was counted.
    assert int(_row(out, "requests sent")) >= 200
    assert _row(out, "lost") == "0"
    assert int(_row(out, "answers by gbm@1")) > 0
    events, late = (int(x) for x in _row(out, "sensor events / late (side stream)").split("/"))
    assert events > 0 and late > 0
    before = _row(out, "accuracy before the drift")
    assert re.match(r"0\.\d{3} \(\d+ labelled answers\)", before), before


@pytest.mark.integration
@pytest.mark.slow
def test_the_short_demo_tells_the_story_and_loses_nothing(tmp_path: Path) -> None:
    """The README's first command installs no extra: neither may the demo need one."""
    _check_story(f"sqlite:///{tmp_path}/bp", base_install=True)


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0]


def test_the_base_install_runner_blocks_exactly_the_extras() -> None:
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    base = {_name(r) for r in project["project"]["dependencies"]}
    extras = {
        _name(r)
        for requirements in project["project"]["optional-dependencies"].values()
        for r in requirements
        if not r.startswith("modelstream[")
    }
    assert set(EXTRA_ONLY) == extras - base


@pytest.mark.integration
@pytest.mark.kafka
@pytest.mark.slow
def test_the_short_demo_runs_on_kafka(kafka_broker: str) -> None:
    """``--backplane kafka://...``: the same story with every topic on the broker."""
    # A group join on the test broker takes half the session timeout (DESIGN.md).
    _check_story(f"kafka://{kafka_broker}", extra_env={"MODELSTREAM_SESSION_TIMEOUT_MS": "3000"})
