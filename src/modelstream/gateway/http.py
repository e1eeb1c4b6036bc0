"""Small HTTP helpers shared by the route modules: JSON bodies in, orjson out."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelstream.errors import DecodeError, InvalidRequest

MAX_BODY_BYTES = 64 * 1024 * 1024


def json_response(obj: Any, status: int = 200) -> Response:
    """``obj`` as JSON (numpy values allowed)."""
    return Response(
        orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
    )


async def json_body(request: Request) -> Any:
    """The request's JSON body; ``DecodeError`` when it is not JSON, ``InvalidRequest``
    when it is too large."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise InvalidRequest(f"request body exceeds {MAX_BODY_BYTES} bytes")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise InvalidRequest(f"request body exceeds {MAX_BODY_BYTES} bytes")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"the request body is not valid JSON: {exc}") from None
