"""The browser front end: `/sdk.js` (stream SDK, an ES module), `/sdk.d.ts`, `/widget.js`
and `/widget.css` (the `<switchboard-chat>` embed), the demo page at `/` and the operator
console at `/console` (`console.js`, `console.css`).

The files live in `src/shim/static/` and are read once, at start-up. Scripts and styles
are public and embedded from other origins, so they carry `Access-Control-Allow-Origin: *`
(a cross-origin `import` of sdk.js, which the widget does, needs it) and
`Cross-Origin-Resource-Policy: cross-origin`; they are cached briefly and revalidated
with an ETag, so a deploy reaches browsers within `ASSET_MAX_AGE_S`. The demo page is
served under the strict Content-Security-Policy the widget is built to live with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import hdrs, web

from shim import openapi

# How long browsers and CDNs may reuse an asset before revalidating it.
ASSET_MAX_AGE_S = 300
# The demo page's policy: what a site embedding the widget from its own origin needs.
DEMO_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".ts": "application/typescript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}
# URL path → file in static/.
ASSETS = {
    "/sdk.js": "sdk.js",
    "/sdk.d.ts": "sdk.d.ts",
    "/widget.js": "widget.js",
    "/widget.css": "widget.css",
    "/demo.js": "demo.js",
    "/demo.css": "demo.css",
    "/console.js": "console.js",
    "/console.css": "console.css",
}
DEMO_PAGE = "/"
CONSOLE_PAGE = "/console"  # the operator console (docs/handoff.md)


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str
    headers: tuple[tuple[str, str], ...]


def _load(name: str, headers: dict[str, str]) -> Asset:
    body = (resources.files("shim") / "static" / name).read_bytes()
    suffix = name[name.rfind("."):]
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return Asset(body, _TYPES[suffix], etag, tuple(headers.items()))


def _asset_headers() -> dict[str, str]:
    return {
        hdrs.CACHE_CONTROL: f"public, max-age={ASSET_MAX_AGE_S}",
        hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: "*",
        "Cross-Origin-Resource-Policy": "cross-origin",
        "X-Content-Type-Options": "nosniff",
    }


def _page_headers() -> dict[str, str]:
    return {
        hdrs.CACHE_CONTROL: "no-cache",
        "Content-Security-Policy": DEMO_PAGE_CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "strict-origin-when-cross-origin",
    }


def _handler(asset: Asset) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def serve(request: web.Request) -> web.Response:
        headers = dict(asset.headers)
        headers[hdrs.ETAG] = asset.etag
        match = request.headers.get(hdrs.IF_NONE_MATCH, "")
        if asset.etag in {tag.strip() for tag in match.split(",")} or match.strip() == "*":
            return web.Response(status=304, headers=headers)
        return web.Response(body=asset.body, headers={**headers,
                                                      hdrs.CONTENT_TYPE: asset.content_type})
    return serve


_SUMMARIES = {
    "/sdk.js": "The stream SDK (an ES module; README \"The stream SDK\").",
    "/sdk.d.ts": "TypeScript declarations of the stream SDK.",
    "/widget.js": "The chat widget: one <script> tag embeds <switchboard-chat>.",
    "/widget.css": "The widget's styles (loaded inside its shadow root).",
    "/demo.js": "The demo page's script.",
    "/demo.css": "The demo page's styles.",
    DEMO_PAGE: "The demo page, with the widget on it.",
    "/console.js": "The operator console's script.",
    "/console.css": "The operator console's styles.",
    CONSOLE_PAGE: "The operator console: the queue, claim, reply, release, close, live.",
}


def _path_item(path: str, content_type: str) -> dict[str, Any]:
    media = content_type.split(";")[0]
    pages = {DEMO_PAGE: "demoPage", CONSOLE_PAGE: "consolePage"}
    name = pages.get(path) or "asset" + "".join(
        part.capitalize() for part in path.strip("/").replace(".", "_").split("_"))
    return {"get": {
        "operationId": name, "summary": _SUMMARIES[path], "tags": ["front end"],
        "security": [],
        "parameters": [{"name": "If-None-Match", "in": "header", "required": False,
                        "schema": {"type": "string"},
                        "description": "An ETag from an earlier answer: 304 if unchanged."}],
        "responses": {
            "200": {"description": "The file.", "content": {media: {"schema": {"type": "string"}}}},
            "304": {"description": "Not modified (the ETag matched)."},
        },
    }}


def setup(app: web.Application) -> None:
    paths: dict[str, Any] = {}
    for path, name in ASSETS.items():
        asset = _load(name, _asset_headers())
        app.router.add_get(path, _handler(asset))
        paths[path] = _path_item(path, asset.content_type)
    page = _load("index.html", _page_headers())
    app.router.add_get(DEMO_PAGE, _handler(page))
    paths[DEMO_PAGE] = _path_item(DEMO_PAGE, page.content_type)
    console = _load("console.html", _page_headers())
    app.router.add_get(CONSOLE_PAGE, _handler(console))
    paths[CONSOLE_PAGE] = _path_item(CONSOLE_PAGE, console.content_type)
    openapi.add_paths(app, paths)


__all__ = ["ASSETS", "ASSET_MAX_AGE_S", "CONSOLE_PAGE", "DEMO_PAGE", "DEMO_PAGE_CSP", "setup"]
