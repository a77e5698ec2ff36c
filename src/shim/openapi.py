"""`GET /openapi.json`: one OpenAPI 3.1 document for every dialect the shim serves.

Each dialect module describes its own endpoints and calls `add_paths(app, paths,
components)` from its `setup(app)`; this module only assembles the document when it is
requested, so the order in which dialects are set up does not matter. Component names
are shared by every dialect: prefix them with the dialect (`HaloChatRequest`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from aiohttp import hdrs, web

from shim import cors
from shim.dialect_openapi import OPS_PATHS

OPENAPI_VERSION = "3.1.0"
API_TITLE = "Switchboard public chat API"
API_VERSION = "1.0.0"


@dataclass
class OpenApiParts:
    paths: dict[str, Any] = field(default_factory=dict)
    # section name (schemas, securitySchemes, responses, ...) → name → object
    components: dict[str, dict[str, Any]] = field(default_factory=dict)


OPENAPI_PARTS = web.AppKey("openapi_parts", OpenApiParts)


def _parts(app: web.Application) -> OpenApiParts:
    if OPENAPI_PARTS not in app:
        app[OPENAPI_PARTS] = OpenApiParts()
    return app[OPENAPI_PARTS]


def add_paths(
    app: web.Application, paths: dict[str, Any],
    components: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Register a dialect's path items and components. A path or component registered twice
    is a programming error (two dialects claiming one name)."""
    parts = _parts(app)
    for path, item in paths.items():
        if path in parts.paths:
            raise ValueError(f"OpenAPI path {path} is registered twice")
        parts.paths[path] = item
    for section, entries in (components or {}).items():
        target = parts.components.setdefault(section, {})
        for name, value in entries.items():
            if name in target and target[name] != value:
                raise ValueError(f"OpenAPI component {section}/{name} is registered twice")
            target[name] = value


def document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI document of everything registered so far."""
    parts = _parts(app)
    doc: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": API_TITLE,
            "version": API_VERSION,
            "description": "The public chat dialects spoken by the Switchboard shim. "
                           "Every rule is enforced by the core; each dialect has its own "
                           "error envelope.",
        },
        "paths": dict(sorted(parts.paths.items())),
    }
    if parts.components:
        doc["components"] = {k: dict(sorted(v.items())) for k, v in parts.components.items()}
    return copy.deepcopy(doc)


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document(request.app))


def setup(app: web.Application) -> None:
    add_paths(app, OPS_PATHS)
    app.router.add_get("/openapi.json", openapi_json)
    cors.allow(app, "/openapi.json", methods=(hdrs.METH_GET,))
