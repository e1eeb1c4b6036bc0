"""The log lines ``serve`` and ``run`` leave for their operator (``log_to_stderr``)."""

from __future__ import annotations

import io
import logging
import re
import sys
from collections.abc import Iterator

import pytest

from modelstream.cli.context import log_to_stderr
from modelstream.settings import Settings


@pytest.fixture
def restored() -> Iterator[logging.Logger]:
    logger = logging.getLogger("modelstream")
    handlers, level = list(logger.handlers), logger.level
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)


def test_a_role_logs_its_lifecycle_at_info_and_the_undo_leaves_no_trace(
    restored: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (list(restored.handlers), restored.level)
    undo = log_to_stderr(Settings())
    logging.getLogger("modelstream.features.featurizer").info("owns %s[%d]", "t", 3)
    logging.getLogger("modelstream.scoring").debug("not at INFO")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} INFO modelstream.features.featurizer: owns t\[3\]",
        lines[0],
    ), lines[0]
    undo()  # the command is over: a later command in this process logs as before it
    logging.getLogger("modelstream.features.featurizer").info("not any more")
    assert capsys.readouterr().err == ""
    assert (restored.handlers, restored.level) == before


def test_the_level_comes_from_the_settings(
    restored: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    log_to_stderr(Settings(log_level="WARNING"))
    logging.getLogger("modelstream.x").info("quiet")
    logging.getLogger("modelstream.x").warning("heard")
    assert capsys.readouterr().err.splitlines()[-1].endswith("WARNING modelstream.x: heard")


def test_a_level_in_lower_case_is_taken() -> None:
    assert Settings(log_level="debug").log_level == "DEBUG"  # type: ignore[arg-type]


def test_an_unknown_level_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"DEBUG.*INFO.*WARNING.*ERROR"):
        Settings(log_level="LOUD")  # type: ignore[arg-type]


def test_a_closed_stderr_left_behind_is_not_written_to(
    restored: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    """A test harness (or a daemon) replaces stderr and closes the old one."""
    old = sys.stderr
    replaced = io.StringIO()
    sys.stderr = replaced
    try:
        log_to_stderr(Settings())
        replaced.close()
    finally:
        sys.stderr = old
    logging.getLogger("modelstream.x").warning("still heard")
    assert capsys.readouterr().err.endswith("WARNING modelstream.x: still heard\n")
