"""Traces in one process (the default `serve`): the shim's span, the core's call span
below it (parent carried in gRPC metadata), and the store, model and tool spans below
that, checked with the SDK's in-memory exporter."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core.observability import tracing
from harness import SECRET, Harness


@pytest.fixture
async def exporter() -> AsyncIterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    tracing.configure_tracing(exporter=memory)
    try:
        yield memory
    finally:
        tracing.shutdown_tracing()


async def test_one_trace_from_the_http_request_down_to_the_tool(
        exporter: InMemorySpanExporter, sb: Harness) -> None:
    async def hook(request: web.Request) -> web.Response:
        return web.json_response({"status": "shipped"})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        await sb.apply_agent({
            "name": "Hooked", "slug": "hooked",
            "provider": {"kind": "scripted", "reply": "Lookup said: {tool_results}",
                         "tool_calls": [{"name": "lookup", "arguments": {"id": "A-1"}}]},
            "tools": [{"name": "lookup", "kind": "webhook",
                       "url": f"http://127.0.0.1:{port}/hook"}],
        })
        parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        async with sb.http.post("/v1/api/chat/hooked", json={"message": "where is A-1?"},
                                headers={"Authorization": f"Bearer {SECRET}",
                                         "traceparent": parent}) as response:
            assert response.status == 200
            await response.read()
    finally:
        await runner.cleanup()
    assert tracing._provider is not None
    tracing._provider.force_flush()
    spans = [s for s in exporter.get_finished_spans()
             if s.context.trace_id == 0x0af7651916cd43dd8448eb211c80319c]
    by_name = {s.name: s for s in spans}
    http = by_name["POST /v1/api/chat/{slug}"]
    assert http.parent is not None and http.parent.span_id == 0xb7ad6b7169203331
    rpc = by_name["/switchboard.v1.ChatService/Chat"]
    assert rpc.parent is not None and rpc.parent.span_id == http.context.span_id
    below_rpc = {s.name for s in spans if s.parent and s.parent.span_id == rpc.context.span_id}
    assert {"store.begin_turn", "store.commit_turn", "model.generate", "tool.run"} <= below_rpc
    assert by_name["tool.run"].attributes["tool.kind"] == "webhook"
