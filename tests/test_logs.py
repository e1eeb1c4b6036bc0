"""log_recovered: a backplane failure is one warning line, anything else a traceback."""

from __future__ import annotations

import logging

import pytest

from modelstream.errors import BackplaneUnavailable, DecodeError
from modelstream.logs import log_recovered

log = logging.getLogger("modelstream.test")


def _logged(caplog: pytest.LogCaptureFixture, error: Exception) -> logging.LogRecord:
    """The one record ``log_recovered`` writes for ``error``, caught as a role catches it."""
    with caplog.at_level(logging.DEBUG, logger=log.name):
        try:
            raise error
        except Exception as exc:
            log_recovered(log, exc, "%s: polling failed, retrying", "svc")
    (record,) = caplog.records
    return record


def test_a_backplane_failure_is_one_warning_line_with_its_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    record = _logged(caplog, BackplaneUnavailable("kafka is unreachable; check that it runs"))
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage() == (
        "svc: polling failed, retrying: kafka is unreachable; check that it runs"
    )


def test_anything_else_is_an_error_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    record = _logged(caplog, DecodeError("request field 'id' must be str"))
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and record.exc_info[0] is DecodeError
    assert record.getMessage() == "svc: polling failed, retrying"
    assert "Traceback" in caplog.text
