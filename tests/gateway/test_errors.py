"""The one mapping from modelstream errors to HTTP statuses and bodies."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from modelstream import errors
from modelstream.gateway.auth import check_token
from modelstream.gateway.errors import GENERIC_MESSAGE, guarded, response_for, status_of


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (errors.InvalidRequest("bad"), 400),
        (errors.DecodeError("bad"), 400),
        (errors.SchemaMismatch("bad"), 400),
        (errors.Unauthorized("token"), 401),
        (errors.ServiceNotFound("fraud"), 404),
        (errors.ModelNotFound("gbm@9"), 404),
        (errors.NotReady("wait"), 503),
        (errors.BackplaneUnavailable("down"), 503),
        (errors.DeadlineExceeded("late"), 504),
        (errors.ScoringError("boom"), 500),
        (RuntimeError("secret"), 500),
    ],
)
def test_status_of(exc: Exception, status: int) -> None:
    assert status_of(exc) == status


def test_error_bodies_carry_the_message() -> None:
    response = response_for(errors.ServiceNotFound("fraud"))
    assert response.status_code == 404
    assert "fraud" in orjson.loads(response.body)["error"]


def test_unexpected_errors_are_generic_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="modelstream.gateway.errors"):
        response = response_for(RuntimeError("password=hunter2"))
    assert response.status_code == 500
    assert orjson.loads(response.body) == {"error": GENERIC_MESSAGE}
    assert b"hunter2" not in response.body
    assert "hunter2" in caplog.text


def test_unauthorized_asks_for_a_bearer_token() -> None:
    assert response_for(errors.Unauthorized("x")).headers["www-authenticate"] == "Bearer"


def test_guarded_turns_exceptions_into_responses() -> None:
    @guarded
    async def endpoint(request: Request) -> Response:
        raise errors.NotReady("starting")

    request = Request({"type": "http", "method": "GET", "headers": []})
    response = asyncio.run(endpoint(request))
    assert response.status_code == 503


def test_a_client_that_disconnects_mid_body_is_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client's timeout or a closed tab: no 500, and no traceback in the role's log."""

    @guarded
    async def endpoint(request: Request) -> Response:
        raise ClientDisconnect()

    request = Request({"type": "http", "method": "POST", "headers": []})
    with caplog.at_level(logging.INFO, logger="modelstream.gateway.errors"):
        response = asyncio.run(endpoint(request))
    assert response.status_code == 400
    assert "disconnected" in orjson.loads(response.body)["error"]
    assert caplog.records == []


def test_check_token() -> None:
    check_token(None, None)
    check_token("s3cret", "Bearer s3cret")
    check_token("s3cret", "bearer s3cret")
    for header in (None, "", "Bearer wrong", "Basic s3cret", "s3cret"):
        with pytest.raises(errors.Unauthorized):
            check_token("s3cret", header)
