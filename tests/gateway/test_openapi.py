"""The shipped OpenAPI document describes every route of the app, and nothing else."""

from __future__ import annotations

from starlette.routing import Route

from modelstream.backplane.memory import MemoryBackplane
from modelstream.gateway.app import build_app, openapi_document
from modelstream.gateway.dataplane import DataPlane
from modelstream.models.registry import Registry
from modelstream.settings import Settings


def test_every_route_is_in_the_openapi_document() -> None:
    settings = Settings(backplane="memory://")
    backplane = MemoryBackplane(settings)
    plane = DataPlane(backplane, settings, Registry(backplane, settings), "gw-doc")
    app = build_app(plane)
    documented = {
        (path, method.upper())
        for path, item in openapi_document()["paths"].items()
        for method in item
        if method in {"get", "post", "put", "delete", "patch"}
    }
    served = {
        (route.path, method)
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert served == documented


def test_the_document_is_openapi_3_with_error_schemas() -> None:
    doc = openapi_document()
    assert doc["openapi"].startswith("3.0")
    assert doc["components"]["schemas"]["error"]["required"] == ["error"]
