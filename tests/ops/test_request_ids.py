"""One request followed end to end: `serve --role core` and `serve --role shim` as separate
processes with JSON logs and OTLP traces. The request id sent by the client is in the
shim's line, passed in gRPC metadata, and in the core's call and turn lines; one trace
spans both processes (a real OTLP/HTTP protobuf receiver runs in the test); no key,
token or message text reaches a log line."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from core.observability.requests import MAX_REQUEST_ID_CHARS
from harness import SECRET, Harness

PORT = re.compile(r"(?:listening on|metrics on) (?:http://)?127\.0\.0\.1:(\d+)")
# Things that must never be logged: keys (a valid one and a wrong one), the message.
MESSAGE = "My card number is 4111 1111 1111 1111, what are your business hours?"
WRONG_KEY = "sk_live_wrong_key_that_must_not_be_logged"


@dataclass
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str


@dataclass
class Collector:
    url: str = ""
    spans: list[Span] = field(default_factory=list)


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    """An OTLP/HTTP receiver: protobuf ExportTraceServiceRequest on POST /v1/traces."""
    box = Collector()

    async def traces(request: web.Request) -> web.Response:
        raw = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        assert request.content_type == "application/x-protobuf"
        export = trace_service_pb2.ExportTraceServiceRequest.FromString(raw)
        for resource in export.resource_spans:
            service = next(a.value.string_value for a in resource.resource.attributes
                           if a.key == "service.name")
            for scope in resource.scope_spans:
                for span in scope.spans:
                    box.spans.append(Span(service, span.name, span.trace_id.hex(),
                                          span.span_id.hex(), span.parent_span_id.hex()))
        body = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    box.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        yield box
    finally:
        await runner.cleanup()


class Process:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    @classmethod
    async def start(cls, *args: str) -> tuple[Process, int]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "launcher.cli", "serve", *args, "--log-format", "json",
            stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            env={**os.environ, "SWITCHBOARD_LOG_LEVEL": "INFO"},
        )
        self = cls(proc)
        port = await self.wait_for("listening on")
        return self, port

    async def wait_for(self, text: str) -> int:
        assert self.proc.stderr is not None
        while True:
            raw = await asyncio.wait_for(self.proc.stderr.readline(), timeout=30)
            assert raw, "serve exited early:\n" + "".join(self.lines)
            line = raw.decode()
            self.lines.append(line)
            if text in line:
                match = PORT.search(line)
                return int(match.group(1)) if match else 0

    async def stop(self) -> list[dict[str, Any]]:
        """SIGTERM, wait, and every log line parsed as JSON (each one must be)."""
        assert self.proc.stderr is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(self.proc.stderr.read(), timeout=30)
        self.lines.extend(rest.decode().splitlines(keepends=True))
        assert await self.proc.wait() == 0, "".join(self.lines)
        return [json.loads(line) for line in self.lines if line.strip()]


async def test_one_request_id_and_one_trace_from_shim_to_core(tmp_path: Path,
                                                             collector: Collector) -> None:
    tracing = ("--otlp-endpoint", collector.url)
    core, grpc_port = await Process.start(
        "--role", "core", "--demo", "--grpc-port", "0", "--database", str(tmp_path / "sb.db"),
        "--metrics-port", "0", *tracing)
    shim: Process | None = None
    try:
        await core.wait_for("demo organisation ready")
        metrics_port = await core.wait_for("/metrics")
        shim, http_port = await Process.start(
            "--role", "shim", "--core", f"127.0.0.1:{grpc_port}", "--http-port", "0", *tracing)
        base = f"http://127.0.0.1:{http_port}"
        async with aiohttp.ClientSession(base) as http:
            async with http.post("/v1/api/chat/support-agent", json={"message": MESSAGE},
                                 headers={"Authorization": f"Bearer {SECRET}",
                                          "X-Request-Id": "req-from-client-0001"}) as r:
                assert r.status == 200, await r.text()
                assert r.headers["X-Request-Id"] == "req-from-client-0001"
                conversation = (await r.json())["data"]["conversationId"]
            async with http.post("/api/sdk/chat/stream", json={"message": MESSAGE},
                                 headers={"Authorization": f"Bearer {SECRET}"}) as r:
                assert r.status == 200
                await r.read()
                made = r.headers["X-Request-Id"]  # none sent: one is made
                assert re.fullmatch(r"[0-9a-f]{32}", made)
            async with http.post("/v1/api/chat/support-agent", json={"message": MESSAGE},
                                 headers={"Authorization": f"Bearer {WRONG_KEY}"}) as r:
                assert r.status == 401
                refused = r.headers["X-Request-Id"]
            # The core's own metrics listener (a --role core process has no shim).
            async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as r:
                assert r.status == 200
                scraped = await r.text()
            async with http.get("/metrics") as r:
                shim_scraped = await r.text()
    finally:
        shim_lines = await shim.stop() if shim is not None else []
        core_lines = await core.stop()

    def having(lines: list[dict[str, Any]], **fields: Any) -> list[dict[str, Any]]:
        return [x for x in lines if all(x.get(k) == v for k, v in fields.items())]

    [http_line] = having(shim_lines, request_id="req-from-client-0001")
    assert http_line["logger"] == "switchboard.http" and http_line["status"] == 200
    assert http_line["dialect"] == "slug" and http_line["route"] == "/v1/api/chat/{slug}"
    assert http_line["duration_ms"] > 0 and http_line["agent"] == "support-agent"
    [turn_line] = having(core_lines, request_id="req-from-client-0001",
                         logger="switchboard.turns")
    assert turn_line["turn_id"] == http_line["turn_id"]
    assert turn_line["conversation_id"] == http_line["conversation_id"]
    assert conversation.endswith(turn_line["conversation_id"].replace("-", ""))
    assert turn_line["agent"] == "support-agent" and turn_line["dialect"] == "slug"
    assert turn_line["status"] == "completed" and turn_line["org"]
    assert http_line["org"] == turn_line["org"]
    assert turn_line["duration_ms"] > 0
    # Every call the request made carries its id (the key check before the body, the turn).
    rpc_lines = having(core_lines, request_id="req-from-client-0001",
                       logger="switchboard.grpc")
    [rpc_line] = [x for x in rpc_lines if x["method"].endswith("ChatService/Chat")]
    assert rpc_line["code"] == "OK"
    # The made-up id travels too; the refused call is logged with its code.
    [halo_line] = having(shim_lines, request_id=made, dialect="halo")
    assert halo_line["org"] == turn_line["org"] and halo_line["turn_id"]
    assert having(core_lines, request_id=made, logger="switchboard.turns")
    assert having(core_lines, request_id=refused, code="UNAUTHENTICATED")
    assert having(shim_lines, request_id=refused, status=401)

    assert re.search(r'switchboard_grpc_calls_total\{code="OK",method="/switchboard\.v1\.'
                     r'ChatService/Chat"\} [1-9]', scraped), scraped
    assert re.search(r'switchboard_turns_total\{agent="support-agent",provider="kb",'
                     r'status="completed"\} 2\.0', scraped)
    assert "switchboard_http_requests_total{" not in scraped  # no shim in that process
    assert 'switchboard_http_requests_total{dialect="slug"' in shim_scraped
    assert "switchboard_turns_total{" not in shim_scraped  # no core in that one

    everything = "".join(shim.lines if shim else []) + "".join(core.lines)
    for secret in (SECRET, WRONG_KEY, "4111", "business hours", "Bearer"):
        assert secret not in everything, secret

    # One trace: the shim's server span is the parent of the core's call span, and the
    # store and model spans hang below it.
    trace_id = turn_line["trace_id"]
    spans = [s for s in collector.spans if s.trace_id == trace_id]
    [http_span] = [s for s in spans if s.service == "switchboard-shim"]
    assert http_span.name == "POST /v1/api/chat/{slug}" and not http_span.parent_id
    [rpc_span] = [s for s in spans if s.name.endswith("ChatService/Chat")]
    assert rpc_span.service == "switchboard-core" and rpc_span.parent_id == http_span.span_id
    names = {s.name for s in spans if s.service == "switchboard-core"}
    assert {"store.begin_turn", "store.commit_turn", "model.generate"} <= names, names


@pytest.mark.parametrize(("sent", "kept"), [
    ("a" * MAX_REQUEST_ID_CHARS, True),
    ("a" * (MAX_REQUEST_ID_CHARS + 1), False),
    ("trace:0af7651916cd43dd/b7ad6b7169203331", True),
    ("has space", False),
    ("<script>", False),
    ("", False),
])
async def test_an_incoming_request_id_is_kept_only_when_safe(sb: Harness, sent: str,
                                                             kept: bool) -> None:
    async with sb.http.get("/healthz", headers={"X-Request-Id": sent}) as response:
        got = response.headers["X-Request-Id"]
    if kept:
        assert got == sent
    else:
        assert got != sent and re.fullmatch(r"[0-9a-f]{32}", got)


async def test_a_grpc_client_can_send_its_own_request_id(
        sb: Harness, caplog: pytest.LogCaptureFixture) -> None:
    from switchboard.v1 import chat_pb2

    caplog.set_level(logging.INFO)
    for sent in ("grpc-client-7", "not valid!"):
        call = sb.chat.Chat(
            chat_pb2.ChatRequest(turn=chat_pb2.TurnInput(message="What are your hours?")),
            metadata=[("authorization", f"Bearer {SECRET}"), ("x-request-id", sent)],
        )
        await call
        org = dict(await call.initial_metadata())["x-switchboard-org"]
        assert org == sb.org_id
    turns = [r for r in caplog.records if r.name == "switchboard.turns"]
    ids = [getattr(r, "request_id", "") for r in turns]
    assert ids[0] == "grpc-client-7"
    assert re.fullmatch(r"[0-9a-f]{32}", ids[1])
    assert all(getattr(r, "org", "") == sb.org_id for r in turns)


async def test_in_process_the_request_id_and_turn_ids_reach_both_lines(
        sb: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """`serve` without --role: the shim calls the core in process, same ids."""
    from shim.app import CORE

    assert sb.running.runner is not None and sb.running.runner.app[CORE].in_process
    caplog.set_level(logging.INFO)
    for path, body in (("/v1/api/chat/support-agent", {"message": "What are your hours?"}),
                       ("/v1/api/chat/support-agent",
                        {"message": "What are your hours?", "stream": True})):
        async with sb.http.post(path, json=body, headers={
                "Authorization": f"Bearer {SECRET}", "X-Request-Id": f"inproc-{len(body)}"}) as r:
            assert r.status == 200
            await r.read()
    for request_id in ("inproc-1", "inproc-2"):
        [http] = [r for r in caplog.records
                  if r.name == "switchboard.http" and getattr(r, "request_id", "") == request_id]
        [turn] = [r for r in caplog.records
                  if r.name == "switchboard.turns" and getattr(r, "request_id", "") == request_id]
        assert getattr(http, "turn_id", None) == getattr(turn, "turn_id", "") != ""
        assert getattr(http, "agent", None) == "support-agent"
