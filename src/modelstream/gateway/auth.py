"""Bearer-token protection of the management API.

When ``Settings.api_token`` is set, every management call must carry
``Authorization: Bearer <token>``; otherwise it gets ``Unauthorized`` (401). With no
token configured the management API is open (the embedded default on loopback). The
comparison is constant-time so the token cannot be guessed byte by byte from timings.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from modelstream.errors import Unauthorized

Endpoint = Callable[[Request], Awaitable[Response]]


def check_token(expected: str | None, authorization: str | None) -> None:
    """Raise ``Unauthorized`` unless ``authorization`` carries ``expected`` (if set)."""
    if expected is None:
        return
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        raise Unauthorized(
            "this management call needs 'Authorization: Bearer <token>' with the token "
            "configured as MODELSTREAM_API_TOKEN"
        )


def protected(token: str | None, endpoint: Endpoint) -> Endpoint:
    """``endpoint``, refusing callers without the token (the check raises; the route's
    error guard turns it into a 401)."""

    async def wrapper(request: Request) -> Response:
        check_token(token, request.headers.get("authorization"))
        return await endpoint(request)

    wrapper.__name__ = getattr(endpoint, "__name__", "endpoint")
    return wrapper
