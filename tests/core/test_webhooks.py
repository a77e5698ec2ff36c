"""Webhook tools against a real local HTTP server: signed JSON POST, the response as the tool
result, and every failure (timeout, non-2xx, redirect, bad JSON, oversize, unreachable)
reported to the model instead of crashing the turn."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from core import limits
from core.agents.definition import parse_agent
from core.clock import FixedClock, SequentialIds
from core.domain import AgentRecord
from core.tools import ServerTools, ToolContext
from core.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, call_webhook, verify
from harness import Harness, auth
from switchboard.v1 import chat_pb2

SECRET = "whsec_test_secret"
NOW = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Receiver:
    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    handler: Handler | None = None


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A real aiohttp server on an ephemeral port; tests set `handler`."""
    box = Receiver(url="")

    async def handle(request: web.Request) -> web.StreamResponse:
        box.requests.append((dict(request.headers), await request.read()))
        assert box.handler is not None
        return await box.handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    box.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield box
    finally:
        await runner.cleanup()


def context(**tool: Any) -> tuple[ToolContext, dict[str, Any]]:
    definition = parse_agent({
        "name": "Hooks", "slug": "hooks", "provider": "scripted",
        "tools": [{"name": "lookup_order", "kind": "webhook", **tool}],
    })
    record = AgentRecord("agent-1", "org-1", "hooks", "Hooks", definition, False, NOW)
    ctx = ToolContext("org-1", "conv-1", record, None, FixedClock(NOW), SequentialIds())  # type: ignore[arg-type]
    return ctx, definition.tools[0]


def reply(body: Any = None, status: int = 200, raw: bytes | None = None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        data = raw if raw is not None else json.dumps(body).encode()
        return web.Response(body=data, status=status, content_type="application/json")
    return handler


async def test_signed_post_and_json_result(receiver: Receiver) -> None:
    receiver.handler = reply({"status": "shipped", "eta": "2026-03-06"})
    ctx, config = context(url=receiver.url, secret=SECRET,
                          headers={"X-Api-Version": "2"},
                          parameters={"type": "object",
                                      "properties": {"order_id": {"type": "string"}},
                                      "required": ["order_id"]})
    run = await call_webhook(ctx, config, {"order_id": "A-1001"})
    assert not run.is_error
    assert run.result == {"status": "shipped", "eta": "2026-03-06"}
    headers, body = receiver.requests[0]
    assert verify(SECRET, body, headers[SIGNATURE_HEADER])
    assert not verify("wrong secret", body, headers[SIGNATURE_HEADER])
    assert headers[SIGNATURE_HEADER].startswith("sha256=")
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Api-Version"] == "2"
    payload = json.loads(body)
    assert payload["tool"] == "lookup_order"
    assert payload["arguments"] == {"order_id": "A-1001"}
    assert payload["conversation_id"] == "conv-1" and payload["agent"] == "hooks"
    # The timestamp is signed (inside the body) and repeated in a header.
    assert payload["timestamp"] == int(NOW.timestamp()) == int(headers[TIMESTAMP_HEADER])


async def test_secret_from_environment_and_missing_secret(receiver: Receiver) -> None:
    receiver.handler = reply({"ok": 1})
    ctx, config = context(url=receiver.url, secret_env="ORDERS_HOOK_SECRET")
    run = await call_webhook(ctx, config, {}, env={"ORDERS_HOOK_SECRET": SECRET})
    assert not run.is_error
    headers, body = receiver.requests[0]
    assert verify(SECRET, body, headers[SIGNATURE_HEADER])
    # Named but unset: refuse to call unsigned, tell the model.
    run = await call_webhook(ctx, config, {}, env={})
    assert run.is_error and "ORDERS_HOOK_SECRET" in run.result["error"]
    assert len(receiver.requests) == 1


async def test_no_secret_means_no_signature(receiver: Receiver) -> None:
    receiver.handler = reply([1, 2, 3])
    ctx, config = context(url=receiver.url)
    run = await call_webhook(ctx, config, {})
    assert run.result == [1, 2, 3]
    assert SIGNATURE_HEADER not in receiver.requests[0][0]


async def test_timeout_is_a_tool_error(receiver: Receiver) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2)
        return web.json_response({})
    receiver.handler = slow
    ctx, config = context(url=receiver.url, timeout_s=0.2)
    run = await call_webhook(ctx, config, {})
    assert run.is_error and run.result["error"] == "webhook timed out after 0.2s"


async def test_stalled_body_is_bounded_by_the_timeout(receiver: Receiver) -> None:
    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"partial": ')
        await asyncio.sleep(2)
        return response
    receiver.handler = trickle
    ctx, config = context(url=receiver.url, timeout_s=0.3)
    run = await call_webhook(ctx, config, {})
    assert run.is_error and "timed out" in run.result["error"]


@pytest.mark.parametrize("status", [400, 404, 500, 503])
async def test_non_2xx_is_reported_with_status_and_body(
    receiver: Receiver, status: int
) -> None:
    receiver.handler = reply({"message": "order not found"}, status=status)
    ctx, config = context(url=receiver.url)
    run = await call_webhook(ctx, config, {})
    assert run.is_error
    assert run.result == {"error": f"webhook returned HTTP {status}", "status": status,
                          "body": {"message": "order not found"}}


async def test_redirects_are_not_followed(receiver: Receiver) -> None:
    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("http://example.invalid/elsewhere")
    receiver.handler = redirect
    ctx, config = context(url=receiver.url)
    run = await call_webhook(ctx, config, {})
    assert run.is_error and run.result["status"] == 302


async def test_invalid_json_and_empty_body(receiver: Receiver) -> None:
    receiver.handler = reply(raw=b"<html>oops</html>")
    ctx, config = context(url=receiver.url)
    run = await call_webhook(ctx, config, {})
    assert run.is_error and run.result["error"] == "webhook returned invalid JSON"
    assert run.result["body"] == "<html>oops</html>"

    async def empty(request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)
    receiver.handler = empty
    run = await call_webhook(ctx, config, {})
    assert not run.is_error and run.result == {"ok": True, "status": 204}


def _json_of_size(size: int) -> bytes:
    body = b'"' + b"a" * (size - 2) + b'"'
    assert len(body) == size
    return body


@pytest.mark.parametrize("chunked", [False, True])
async def test_response_size_limit(receiver: Receiver, chunked: bool) -> None:
    cap = limits.MAX_WEBHOOK_RESPONSE_BYTES

    def sized(size: int) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            data = _json_of_size(size)
            if not chunked:
                return web.Response(body=data, content_type="application/json")
            # No Content-Length: the cap must hold while streaming too.
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for start in range(0, len(data), 10_000):
                await response.write(data[start:start + 10_000])
            await response.write_eof()
            return response
        return handler

    ctx, config = context(url=receiver.url)
    receiver.handler = sized(cap)
    at_max = await call_webhook(ctx, config, {})
    assert not at_max.is_error and len(at_max.result) == cap - 2
    receiver.handler = sized(cap + 1)
    over = await call_webhook(ctx, config, {})
    assert over.is_error and over.result["error"] == f"webhook response larger than {cap} bytes"


async def test_unreachable_receiver() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx, config = context(url=f"http://127.0.0.1:{port}/hook", timeout_s=2)
    run = await call_webhook(ctx, config, {})
    assert run.is_error and run.result["error"].startswith("webhook unreachable")


async def test_arguments_are_checked_against_the_schema(receiver: Receiver) -> None:
    receiver.handler = reply({})
    ctx, config = context(url=receiver.url, parameters={
        "type": "object", "properties": {"order_id": {"type": "string"}},
        "required": ["order_id"]})
    run = await call_webhook(ctx, config, {"order_id": 42})
    assert run.is_error and run.result["error"].startswith("invalid arguments at order_id")
    assert receiver.requests == []


async def test_server_tools_dispatch_bad_arguments_json(receiver: Receiver) -> None:
    receiver.handler = reply({"fine": True})
    ctx, _ = context(url=receiver.url)
    tools = ServerTools()
    assert (await tools.run(ctx, "lookup_order", "{}")).result == {"fine": True}
    bad = await tools.run(ctx, "lookup_order", "{not json")
    assert bad.is_error and bad.result["error"].startswith("invalid arguments")


async def test_failing_webhook_does_not_crash_the_turn(sb: Harness, receiver: Receiver) -> None:
    receiver.handler = reply({"message": "boom"}, status=500)
    await sb.apply_agent({
        "name": "Hooked", "slug": "hooked",
        "provider": {"kind": "scripted", "reply": "Lookup said: {tool_results}",
                     "tool_calls": [{"name": "lookup_order",
                                     "arguments": {"order_id": "A-1"}}]},
        "tools": [{"name": "lookup_order", "kind": "webhook", "url": receiver.url,
                   "secret": SECRET}],
    })
    call = sb.chat.StreamChat(chat_pb2.StreamChatRequest(
        turn=chat_pb2.TurnInput(message="where is my order?", agent="hooked")),
        metadata=auth())
    events = [r.event async for r in call]
    results = [e.tool_result for e in events if e.HasField("tool_result")]
    assert len(results) == 1 and results[0].is_error
    assert json.loads(results[0].result_json)["status"] == 500
    assert events[-1].HasField("completed")
    assert "webhook returned HTTP 500" in events[-1].completed.text
    headers, body = receiver.requests[0]
    assert verify(SECRET, body, headers[SIGNATURE_HEADER])
    assert json.loads(body)["agent"] == "hooked"


async def test_calls_share_one_kept_alive_connection_and_no_cookies(
        receiver: Receiver) -> None:
    """One pooled session per process: the second call reuses the first one's
    connection (no new handshake), and a cookie one receiver sets is never sent back
    (the session is shared by every organisation)."""
    peers: list[Any] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        response = web.json_response({"ok": True})
        response.set_cookie("tenant", "org-1")
        return response

    receiver.handler = handler
    ctx, config = context(url=receiver.url)
    for _ in range(3):
        run = await call_webhook(ctx, config, {})
        assert not run.is_error
    assert len(peers) == 3 and len(set(peers)) == 1
    assert all("Cookie" not in headers for headers, _ in receiver.requests)
