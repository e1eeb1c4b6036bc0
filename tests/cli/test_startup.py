"""What a ``modelstream`` command imports before it runs.

A command imports its own module alone (the registry in ``cli/app.py`` loads it by
name), and ``run ROLE`` makes only its role, so every role process that ``serve
--processes`` or a supervisor starts, and restarts after a crash, imports what its role
needs. pandas (and the archive, training and demo code built on it) is imported only by
the commands that use it. (The commands that use it are tested where their features
are: archive, compare, experiments, train, demo.)
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


ROLE_PROBE = """
import sys
from modelstream.backplane.memory import MemoryBackplane
from modelstream.cli.app import main
from modelstream.gateway.serving import Serving
from modelstream.settings import Settings

wanted = sys.argv[1:]
sys.argv = ["modelstream", "run", "--help"]
try:
    main()
except SystemExit:
    pass
Serving(MemoryBackplane(), Settings(backplane="memory://"), [], gateway=False, scorers=False,
        monitor=False, featurizers=False, archiver=False, trainer=False, rendezvous=True)
print(",".join(m for m in wanted if m in sys.modules))
"""
# What a rendezvous process has no use for: the other commands, the other roles, and
# the libraries they bring.
NOT_FOR_THE_RENDEZVOUS = (
    "modelstream.cli.archive", "modelstream.cli.deploy", "modelstream.cli.monitor",
    "modelstream.cli.models", "modelstream.scoring.pool", "modelstream.monitoring.monitor",
    "modelstream.gateway.server", "modelstream.features.role", "onnxruntime", "starlette",
)  # fmt: skip


@pytest.mark.integration
def test_the_run_command_and_a_rendezvous_import_no_other_command_or_role() -> None:
    done = subprocess.run(
        [sys.executable, "-c", ROLE_PROBE, *NOT_FOR_THE_RENDEZVOUS, "modelstream.cli.serve"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    imported = done.stdout.strip().splitlines()[-1]  # after the command's help
    assert imported == "modelstream.cli.serve"  # the probe sees the command's own module
