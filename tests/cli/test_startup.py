"""What a ``modelstream`` command imports before it runs.

Every CLI call, and every role process that ``serve --processes`` starts, imports all
the command modules. pandas (and the archive, training and demo code built on it) is
imported only by the commands that use it, so a scorer or a gateway starts, and
restarts after a crash, without it. (The commands that use it are tested where their
features are: archive, compare, experiments, train, demo.)
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("pandas", "sklearn", "modelstream.archive.reader", "modelstream.training.cycle",
         "modelstream.demo.story", "modelstream.monitoring.compare")  # fmt: skip

PROBE = """
import sys
from modelstream.cli.app import app
from modelstream.gateway.serving import Serving, run_scorer
print(",".join(m for m in sys.argv[1:] if m in sys.modules))
"""


@pytest.mark.integration
def test_the_commands_and_the_serving_roles_import_no_pandas() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *HEAVY],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"imported at start: {done.stdout.strip()}"
