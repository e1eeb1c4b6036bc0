"""log_recovered: a backplane failure is one warning line, anything else a traceback."""

from __future__ import annotations

import logging

import pytest

from modelstream.errors import BackplaneUnavailable, DecodeError
from modelstream.logs import log_recovered

log = logging.getLogger("modelstream.test")


def test_a_backplane_failure_is_one_warning_line_with_its_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger=log.name):
        try:
            raise BackplaneUnavailable("kafka is unreachable; check that it runs")
        except BackplaneUnavailable as exc:
            log_recovered(log, exc, "%s: polling failed, retrying", "svc")
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage() == (
        "svc: polling failed, retrying: kafka is unreachable; check that it runs"
    )


def test_anything_else_is_an_error_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger=log.name):
        try:
            raise DecodeError("request field 'id' must be str")
        except DecodeError as exc:
            log_recovered(log, exc, "%s: polling failed, retrying", "svc")
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and record.exc_info[0] is DecodeError
    assert record.getMessage() == "svc: polling failed, retrying"
    assert "Traceback" in caplog.text
