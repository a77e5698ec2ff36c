"""The front-end files the shim serves: content types, caching, CORS, the demo page's CSP."""

from __future__ import annotations

import pytest

from harness import Harness
from shim.frontend import ASSET_MAX_AGE_S, ASSETS, DEMO_PAGE_CSP

TYPES = {
    "/sdk.js": "text/javascript", "/widget.js": "text/javascript",
    "/sdk.d.ts": "application/typescript", "/widget.css": "text/css",
}


@pytest.mark.parametrize("path", sorted(TYPES))
async def test_assets_are_typed_cached_and_embeddable(sb: Harness, path: str) -> None:
    async with sb.http.get(path, headers={"Origin": "https://shop.example"}) as resp:
        assert resp.status == 200
        assert resp.content_type == TYPES[path] and resp.charset == "utf-8"
        assert resp.headers["Cache-Control"] == f"public, max-age={ASSET_MAX_AGE_S}"
        # sdk.js is imported cross-origin (module scripts need CORS).
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        etag = resp.headers["ETag"]
        assert len(await resp.read()) > 100
    async with sb.http.get(path, headers={"If-None-Match": etag}) as resp:
        assert resp.status == 304 and await resp.read() == b""


async def test_demo_page_has_the_widget_and_a_strict_policy(sb: Harness) -> None:
    async with sb.http.get("/") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        assert resp.headers["Content-Security-Policy"] == DEMO_PAGE_CSP
        assert resp.headers["Cache-Control"] == "no-cache"
        html = await resp.text()
    assert '<script src="/widget.js" data-key="ab_live_demo_widget_key" defer></script>' in html
    assert "script-src 'self'" in DEMO_PAGE_CSP and "unsafe" not in DEMO_PAGE_CSP
    # No inline script: every <script> has a src.
    assert html.count("<script") == html.count("<script src=")


async def test_console_page_is_served_under_the_strict_policy(sb: Harness) -> None:
    async with sb.http.get("/console") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        assert resp.headers["Content-Security-Policy"] == DEMO_PAGE_CSP
        html = await resp.text()
    assert '<script type="module" src="/console.js"></script>' in html
    assert html.count("<script") == html.count("<script type=\"module\" src=")
    for path in ("/console.js", "/console.css"):
        async with sb.http.get(path) as resp:
            assert resp.status == 200


def test_every_asset_ships_in_the_package() -> None:
    from importlib import resources

    static = resources.files("shim") / "static"
    for name in [*ASSETS.values(), "index.html", "console.html"]:
        assert (static / name).is_file(), name
