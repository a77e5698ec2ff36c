"""Helpers for the handoff tests: an SSE reader over a real socket, the operator REST
calls, and a fake OpenAI-compatible model server that counts its calls."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from harness import SECRET, Harness

OPERATOR = "/api/operator/v1"
LISTEN = "/api/sdk/chat/listen"
WAIT_S = 10.0  # how long a test waits for an event it expects (never a speed assertion)


@dataclass
class SSEEvent:
    id: str
    event: str
    data: dict[str, Any]


class SSEReader:
    """Reads an open `text/event-stream` response into a queue of events."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.events: asyncio.Queue[SSEEvent] = asyncio.Queue()
        self._task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        fields: dict[str, str] = {}
        data: list[str] = []
        with contextlib.suppress(aiohttp.ClientError, asyncio.CancelledError):
            async for raw in self.response.content:
                line = raw.decode("utf-8").rstrip("\n")
                if not line:
                    if data:
                        self.events.put_nowait(SSEEvent(
                            fields.get("id", ""), fields.get("event", "message"),
                            json.loads("\n".join(data))))
                    fields, data = {}, []
                elif line.startswith(":"):
                    continue
                else:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "data":
                        data.append(value)
                    else:
                        fields[name] = value

    async def next(self, timeout_s: float = WAIT_S) -> SSEEvent:
        return await asyncio.wait_for(self.events.get(), timeout_s)

    async def until(self, predicate: Any, timeout_s: float = WAIT_S) -> SSEEvent:
        """The next event that matches (skipping the others)."""
        async with asyncio.timeout(timeout_s):
            while True:
                event = await self.events.get()
                if predicate(event):
                    return event

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.response.close()


@contextlib.asynccontextmanager
async def sse(sb: Harness, path: str, key: str, **kw: Any) -> AsyncIterator[SSEReader]:
    headers = {"Authorization": f"Bearer {key}", **kw.pop("headers", {})}
    response = await sb.http.get(path, headers=headers, **kw)
    assert response.status == 200, (response.status, await response.text())
    assert response.content_type == "text/event-stream"
    reader = SSEReader(response)
    try:
        yield reader
    finally:
        await reader.close()


async def op(sb: Harness, method: str, path: str, key: str = SECRET,
             body: Any = None, **kw: Any) -> tuple[int, Any]:
    """One operator REST call; (status, JSON)."""
    async with sb.http.request(method, OPERATOR + path, json=body,
                               headers={"Authorization": f"Bearer {key}"}, **kw) as resp:
        return resp.status, await resp.json()


@dataclass
class CountingModel:
    """An OpenAI-compatible chat-completions server that streams one reply and counts
    how often it was called."""

    reply: str = "The bot answers."
    base_url: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.calls.append(await request.json())
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for part in (self.reply, None):
            choice: dict[str, Any] = {"index": 0, "delta": {"content": part} if part else {},
                                      "finish_reason": None if part else "stop"}
            body = {"id": "c1", "object": "chat.completion.chunk", "created": 1,
                    "model": "m", "choices": [choice]}
            await response.write(b"data: " + json.dumps(body).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response


@contextlib.asynccontextmanager
async def counting_model(reply: str = "The bot answers.") -> AsyncIterator[CountingModel]:
    model = CountingModel(reply)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", model.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    model.base_url = f"http://{host}:{port}/v1"
    try:
        yield model
    finally:
        await runner.cleanup()


async def model_agent(sb: Harness, model: CountingModel, slug: str = "helper") -> str:
    return await sb.apply_agent({
        "name": slug, "slug": slug,
        "provider": {"kind": "openai", "model": "m", "base_url": model.base_url,
                     "max_retries": 0},
    })
