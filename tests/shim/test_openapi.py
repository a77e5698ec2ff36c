"""`GET /openapi.json` is a valid OpenAPI 3.1 document describing the Halo endpoints."""

from __future__ import annotations

import pytest
from aiohttp import web
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from harness import Harness
from shim import openapi


async def test_openapi_document_is_valid_3_1(sb: Harness) -> None:
    async with sb.http.get("/openapi.json") as resp:
        assert resp.status == 200
        doc = await resp.json()
    assert doc["openapi"].startswith("3.1")
    # Raises on any violation of the OpenAPI 3.1 schema (and of its JSON Schema dialect).
    validate(doc, cls=OpenAPIV31SpecValidator)
    for path in ("/api/sdk/chat", "/api/sdk/chat/stream"):
        post = doc["paths"][path]["post"]
        assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"] == (
            "#/components/schemas/HaloChatRequest"
        )
        assert {"200", "400", "401", "403", "404", "413", "422", "429", "500", "503"} <= set(
            post["responses"]
        )
    stream_headers = doc["paths"]["/api/sdk/chat/stream"]["post"]["responses"]["200"]["headers"]
    assert {"X-Session-Id", "X-Agent-Id"} <= set(stream_headers)


def test_dialects_add_paths_in_any_order_and_conflicts_fail() -> None:
    app = web.Application()
    openapi.add_paths(app, {"/a": {"get": {"responses": {"200": {"description": "ok"}}}}},
                      {"schemas": {"A": {"type": "string"}}})
    openapi.setup(app)
    openapi.add_paths(app, {"/b": {"get": {"responses": {"200": {"description": "ok"}}}}},
                      {"schemas": {"A": {"type": "string"}}})  # same definition: fine
    doc = openapi.document(app)
    assert {"/a", "/b", "/healthz", "/readyz", "/openapi.json"} == set(doc["paths"])
    validate(doc, cls=OpenAPIV31SpecValidator)
    with pytest.raises(ValueError):
        openapi.add_paths(app, {"/a": {}})
    with pytest.raises(ValueError):
        openapi.add_paths(app, {}, {"schemas": {"A": {"type": "integer"}}})


def test_every_http_route_of_every_dialect_is_documented() -> None:
    from shim.app import create_app

    app = create_app("127.0.0.1:1")
    doc = openapi.document(app)
    validate(doc, cls=OpenAPIV31SpecValidator)
    routes = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
              if r.resource is not None and r.method not in ("OPTIONS", "HEAD")}
    missing = sorted((m, p) for m, p in routes if m not in doc["paths"].get(p, {}))
    assert not missing
    for prefix in ("/api/sdk/", "/v1/api/chat/", "/chat/", "/v1/aibot/",
                   "/api/public/v1/chat/"):
        assert any(p.startswith(prefix) for p in doc["paths"]), prefix
