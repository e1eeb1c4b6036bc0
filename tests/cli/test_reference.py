"""docs/cli.md is the generated CLI reference, and it matches the commands."""

from __future__ import annotations

from pathlib import Path

from modelstream.cli.reference import render

DOC = Path(__file__).parents[2] / "docs" / "cli.md"


def test_the_committed_cli_reference_matches_the_commands() -> None:
    expected = render()
    assert "modelstream topics create" in expected
    assert DOC.read_text() == expected, (
        "docs/cli.md is stale: run `python -m modelstream.cli.reference > docs/cli.md`"
    )
