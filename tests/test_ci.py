"""CI runs what the README promises: its test command, exactly, and the static checks."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _bash_blocks(markdown: str) -> list[str]:
    return [b.strip() for b in re.findall(r"^```bash\n(.*?)^```", markdown, flags=re.M | re.S)]


def _executed(script: str) -> list[str]:
    """The script's lines that run: no blank lines, no comments."""
    lines = (line.strip() for line in script.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_ci_runs_the_readmes_second_command_exactly_and_the_static_checks() -> None:
    readme = (ROOT / "README.md").read_text()
    first, second = _bash_blocks(readme)[:2]
    # The README opens with the two commands: nothing but a title and a line before them.
    assert readme.index(first) < readme.index("## ")
    assert "\n" not in second and "pytest" in second and "'.[dev]'" in second

    ci = _executed((ROOT / ".ci" / "run").read_text())
    assert ci.count(second) == 1, f".ci/run must run the README's test command: {second}"
    ran_at = ci.index(second)
    assert "set -euo pipefail" in ci[:ran_at]  # a failing test fails CI
    # The static checks run beside the tests, and CI's verdict waits for theirs.
    started = [i for i, line in enumerate(ci) if "bash scripts/check" in line]
    assert started and started[0] < ran_at and ci[started[0]].endswith("&")
    assert ci[started[0] + 1] == "checks=$!"
    assert 'wait "$checks" || checked=$?' in ci[ran_at:]
    assert ci[-1] == 'exit "$checked"'

    checks = _executed((ROOT / "scripts" / "check").read_text())
    assert "set -euo pipefail" in checks
    assert any(re.search(r"ruff\"? format --check src", line) for line in checks)
    assert any(re.search(r"ruff\"? check src", line) for line in checks)
    assert any(re.search(r"mypy\"? --strict src", line) for line in checks)
