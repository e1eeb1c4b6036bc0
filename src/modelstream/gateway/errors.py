"""The one place where modelstream errors become HTTP status codes and bodies.

Every error a client sees is ``{"error": "<message>"}`` (the Open Inference Protocol's
error object). The mapping, most specific class first:

==========================================================  ======
``Unauthorized``                                            401
``InvalidRequest``, ``DecodeError``, ``ConfigurationError``  400
``ModelLoadError``, ``IntegrityError``, ``SignatureError``,
``SchemaMismatch`` (a model or body the caller sent)        400
``ServiceNotFound``, ``ModelNotFound``                      404
``RecordTooLarge`` (the request is above the backplane's
record limit)                                               413
``NotReady``, ``BackplaneUnavailable``                      503
``DeadlineExceeded``                                        504
any other ``ModelstreamError``                              500 (its message)
anything else                                               500 (generic; logged)
==========================================================  ======

A traceback never reaches a client: unexpected exceptions are logged here with theirs
and answered with a generic message.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import wraps

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from modelstream.errors import (
    BackplaneUnavailable,
    ConfigurationError,
    DeadlineExceeded,
    DecodeError,
    IntegrityError,
    InvalidRequest,
    ModelLoadError,
    ModelNotFound,
    ModelstreamError,
    NotReady,
    RecordTooLarge,
    SchemaMismatch,
    ServiceNotFound,
    SignatureError,
    Unauthorized,
)

log = logging.getLogger(__name__)

STATUS: tuple[tuple[type[ModelstreamError], int], ...] = (
    (Unauthorized, 401),
    (InvalidRequest, 400),
    (DecodeError, 400),
    (ConfigurationError, 400),
    (ModelLoadError, 400),
    (IntegrityError, 400),
    (SignatureError, 400),
    (SchemaMismatch, 400),
    (ServiceNotFound, 404),
    (ModelNotFound, 404),
    (RecordTooLarge, 413),
    (NotReady, 503),
    (BackplaneUnavailable, 503),
    (DeadlineExceeded, 504),
)

GENERIC_MESSAGE = "internal error; the gateway's log has the details"

Endpoint = Callable[[Request], Awaitable[Response]]


def status_of(exc: BaseException) -> int:
    """The HTTP status answering ``exc`` (500 for anything not in :data:`STATUS`)."""
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """``{"error": message}`` with ``status``."""
    return Response(
        orjson.dumps({"error": message}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def response_for(exc: BaseException) -> Response:
    """The response a client gets for ``exc``; logs exceptions that were not expected."""
    status = status_of(exc)
    if isinstance(exc, ModelstreamError):
        if status == 500:
            log.error("request failed: %s", exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return error_response(status, str(exc) or type(exc).__name__, headers)
    log.exception("unexpected error while serving a request", exc_info=exc)
    return error_response(500, GENERIC_MESSAGE)


def guarded(endpoint: Endpoint) -> Endpoint:
    """Wrap an endpoint so every exception becomes :func:`response_for`'s answer."""

    @wraps(endpoint)
    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except HTTPException:
            raise
        except ClientDisconnect:
            # The caller gave up (its timeout, a closed tab) before its body arrived:
            # nobody reads this answer, and nothing went wrong here to log a trace for.
            log.debug("a client disconnected before its request body arrived")
            return error_response(400, "the client disconnected before its request arrived")
        except Exception as exc:
            return response_for(exc)

    return wrapper


async def http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (unknown route, wrong method) in the protocol's error shape."""
    if isinstance(exc, HTTPException):
        return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}) or None)
    return response_for(exc)
