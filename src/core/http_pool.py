"""One pooled HTTP client for the core's outgoing calls (model providers, webhook tools).

A session per call meant a TCP (and TLS) handshake per model step and per webhook call;
this session keeps connections alive between them. It is made on first use, on the
running event loop, and closed when the last core of the process stops (`CoreServer`
holds it with `hold()` / `release()`).

The session keeps no cookies: it is shared by every organisation, and a cookie one
tenant's webhook set must never reach another's. It does not cap connections either
(aiohttp's default is 100 per session): a session per call had no such cap, and a
deployment's concurrency is bounded by the core's own limits.
"""

from __future__ import annotations

import asyncio

import aiohttp

# Idle kept-alive connections are closed after this long (aiohttp's default is 15 s).
KEEPALIVE_TIMEOUT_S = 30.0

_session: aiohttp.ClientSession | None = None
_loop: asyncio.AbstractEventLoop | None = None  # the loop `_session` belongs to
_holders = 0


def session() -> aiohttp.ClientSession:
    """The shared session of the running event loop (made on first use)."""
    global _session, _loop
    loop = asyncio.get_running_loop()
    current = _session
    if current is None or current.closed or _loop is not loop:
        current = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_TIMEOUT_S),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        _session, _loop = current, loop
    return current


def hold() -> None:
    """A core starts using the pool."""
    global _holders
    _holders += 1


async def release() -> None:
    """A core stopped; the last one closes the session."""
    global _holders
    _holders = max(0, _holders - 1)
    if _holders == 0:
        await close()


async def close() -> None:
    global _session, _loop
    current, _session, _loop = _session, None, None
    if current is not None and not current.closed:
        await current.close()
