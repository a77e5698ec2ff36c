"""Real browser tests: Debian's `chromium`, driven by playwright-core (npm) through
`driver.mjs`, against a real Switchboard from tests/harness.py.

One headless Chromium serves the whole run (started on first use, DevTools on an
ephemeral port); each scenario is one `node driver.mjs <scenario>` process that opens a
fresh browser context. Pages "of another origin" come from `HostPages`, a second HTTP
server on its own port (and host name: `localhost` while the shim is `127.0.0.1`).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

HERE = Path(__file__).parent
DRIVER = HERE / "driver.mjs"
PLAYWRIGHT = HERE / "node_modules" / "playwright-core"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
)
SCENARIO_TIMEOUT_S = 45


def chromium_path() -> str | None:
    return os.environ.get("SWITCHBOARD_CHROMIUM") or shutil.which("chromium")


def skip_reason() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if chromium_path() is None:
        return ("chromium is not installed (apt-get install -y chromium; .ci/run does it): "
                "browser tests skipped")
    if shutil.which("node") is None:
        return "node is not installed: browser tests skipped"
    if not PLAYWRIGHT.is_dir():
        return ("tests/browser/node_modules is missing (run `make browser-deps`): browser "
                "tests skipped")
    return None


def start_chromium(profile: Path) -> Iterator[str]:
    """Run Chromium until the generator is closed; yields its DevTools websocket URL."""
    chromium = chromium_path()
    assert chromium is not None
    log = (profile.parent / "chromium.log").open("wb")
    proc = subprocess.Popen(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=log,
    )
    try:
        # Chromium writes the port it picked (and the browser target's path) here.
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while True:
            lines = active.read_text().split() if active.exists() else []
            if len(lines) >= 2:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not start: see " + str(log.name))
            time.sleep(0.05)
        yield f"ws://127.0.0.1:{lines[0]}{lines[1]}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def run_scenario(cdp: str, name: str, **params: Any) -> Any:
    """Run one driver scenario; returns what it observed (its JSON line)."""
    proc = await asyncio.create_subprocess_exec(
        "node", str(DRIVER), name, json.dumps(params), cwd=HERE,
        env={**os.environ, "SWITCHBOARD_CDP": cdp},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), SCENARIO_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise AssertionError(f"browser scenario {name!r} failed:\n{err.decode()}")
    return json.loads(out.decode().strip().splitlines()[-1])


class HostPages:
    """A second web server: the customer's site, on another origin than the shim."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[str, dict[str, str]]] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> HostPages:
        app = web.Application()
        app.router.add_get("/{name}", self._serve)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def origin(self, host: str = "localhost") -> str:
        return f"http://{host}:{self.port}"

    def add(self, name: str, html: str, headers: dict[str, str] | None = None,
            host: str = "localhost") -> str:
        self.pages[name] = (html, headers or {})
        return f"{self.origin(host)}/{name}"

    async def _serve(self, request: web.Request) -> web.Response:
        page = self.pages.get(request.match_info["name"])
        if page is None:
            raise web.HTTPNotFound()
        html, headers = page
        return web.Response(text=html, content_type="text/html", headers=headers)


# The host page's own styles, hostile on purpose: none of it may reach the widget.
HOST_STYLE = ("<style>body { font-family: 'Comic Sans MS', cursive; color: rgb(255, 0, 0); }"
              " .msg, button { color: lime !important; background: black !important; }</style>")


def widget_page(shim: str, key: str, *, agent: str = "", before: str = "",
                extra: str = "", style: str = HOST_STYLE) -> str:
    """A host page embedding the widget with the one documented tag."""
    agent_attr = f' data-agent="{agent}"' if agent else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Host site</title>"
        '<link rel="icon" href="data:,">'
        f'<script src="{shim}/widget.js" data-key="{key}"{agent_attr}{extra} defer></script>'
        f"{style}</head><body><h1>A customer's site</h1>{before}</body></html>"
    )


@pytest.fixture(scope="session")
def cdp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The DevTools endpoint of the run's one headless Chromium."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    yield from start_chromium(tmp_path_factory.mktemp("chromium") / "profile")
