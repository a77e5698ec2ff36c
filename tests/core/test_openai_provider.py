"""The `openai` provider against a local fake that speaks OpenAI's streaming wire format.

The fake is a real aiohttp server on 127.0.0.1 port 0 and replays chunks shaped exactly
like api.openai.com's (compact JSON, `data: ...\\n\\n`, `usage: null` on every chunk
when `include_usage` is on, a final `choices: []` usage chunk, `data: [DONE]`).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from core.providers.base import (
    ChatMessage,
    ContextEntry,
    GenerationRequest,
    ModelProvider,
    ProviderError,
    ProviderEvent,
    TextChunk,
    ToolCall,
    ToolCallArgsChunk,
    ToolCallBegin,
    ToolCallDone,
    ToolSpec,
    UsageReport,
)
from core.providers.openai import OpenAIConfig, OpenAIProvider

API_KEY = "sk-test-9f8e7d6c5b4a3210SECRET"
MODEL = "gpt-4o-mini"
SERVED_MODEL = "gpt-4o-mini-2024-07-18"

Responder = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- the fake upstream -----------------------------------------------------------------


@dataclass
class FakeOpenAI:
    base_url: str = ""
    script: list[Responder] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    client_gone: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await request.json())
        self.headers.append(dict(request.headers))
        # The last scripted responder repeats, so "always 503" is a one-item script.
        responder = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return await responder(request)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.base_url = f"http://{host}:{port}/v1"
    try:
        yield server
    finally:
        server.release.set()  # unblock handlers parked by stall/cancel scenarios
        await runner.cleanup()


def chunk(
    delta: dict[str, Any] | None = None,
    *,
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
    no_choices: bool = False,
) -> bytes:
    """One SSE event exactly as OpenAI serialises it (compact JSON, key order kept)."""
    body: dict[str, Any] = {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion.chunk",
        "created": 1741570283,
        "model": SERVED_MODEL,
        "service_tier": "default",
        "system_fingerprint": "fp_06737a9306",
        "choices": []
        if no_choices
        else [
            {
                "index": 0,
                "delta": delta if delta is not None else {},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage,
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


USAGE = {
    "prompt_tokens": 87,
    "completion_tokens": 12,
    "total_tokens": 99,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
DONE = b"data: [DONE]\n\n"

# A real text completion, byte for byte as api.openai.com streams it.
TEXT_STREAM = [
    b'data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk",'
    b'"created":1741570283,"model":"gpt-4o-mini-2024-07-18","service_tier":"default",'
    b'"system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":{"role":"assistant",'
    b'"content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
    b'data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk",'
    b'"created":1741570283,"model":"gpt-4o-mini-2024-07-18","service_tier":"default",'
    b'"system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":{"content":"Your"},'
    b'"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
    b'data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk",'
    b'"created":1741570283,"model":"gpt-4o-mini-2024-07-18","service_tier":"default",'
    b'"system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":{"content":" refund"},'
    b'"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
    b'data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk",'
    b'"created":1741570283,"model":"gpt-4o-mini-2024-07-18","service_tier":"default",'
    b'"system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":{"content":" is on'
    b' its way \\u2014 3\\u20135 days."},"logprobs":null,"finish_reason":null}],"usage":null}\n\n',
    b'data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk",'
    b'"created":1741570283,"model":"gpt-4o-mini-2024-07-18","service_tier":"default",'
    b'"system_fingerprint":"fp_06737a9306","choices":[{"index":0,"delta":{},"logprobs":null,'
    b'"finish_reason":"stop"}],"usage":null}\n\n',
    b'data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk",'
    b'"created":1741570283,"model":"gpt-4o-mini-2024-07-18","service_tier":"default",'
    b'"system_fingerprint":"fp_06737a9306","choices":[],"usage":{"prompt_tokens":87,'
    b'"completion_tokens":12,"total_tokens":99,"prompt_tokens_details":{"cached_tokens":0,'
    b'"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,'
    b'"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}\n\n',
    DONE,
]


async def _start_sse(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    return response


def sse(parts: list[bytes], *, split: int = 0) -> Responder:
    """Stream `parts`; with `split`, re-cut the bytes into `split`-sized writes."""

    async def respond(request: web.Request) -> web.StreamResponse:
        response = await _start_sse(request)
        data = b"".join(parts)
        writes = [data[i : i + split] for i in range(0, len(data), split)] if split else parts
        for piece in writes:
            await response.write(piece)
        await response.write_eof()
        return response

    return respond


def error(status: int, body: Any, headers: dict[str, str] | None = None) -> Responder:
    async def respond(request: web.Request) -> web.StreamResponse:
        text = body if isinstance(body, str) else json.dumps(body)
        ctype = "text/html" if isinstance(body, str) else "application/json"
        return web.Response(status=status, text=text, content_type=ctype, headers=headers)

    return respond


def openai_error(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


# --- helpers ---------------------------------------------------------------------------


class Sleeps:
    """An injected `sleep` that records delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def make_provider(fake: FakeOpenAI, **overrides: Any) -> tuple[OpenAIProvider, Sleeps]:
    session = overrides.pop("session", None)
    config = OpenAIConfig(
        model=MODEL,
        api_key=API_KEY,
        base_url=fake.base_url,
        **{"connect_timeout_s": 2.0, "read_timeout_s": 5.0, **overrides},
    )
    sleeps = Sleeps()
    return OpenAIProvider(config, session=session, sleep=sleeps, rand=lambda: 0.5), sleeps


def simple_request() -> GenerationRequest:
    return GenerationRequest(messages=(ChatMessage(role="user", content="Where is my refund?"),))


async def collect(provider: OpenAIProvider, request: GenerationRequest) -> list[ProviderEvent]:
    return [event async for event in provider.generate(request)]


# --- streaming -------------------------------------------------------------------------


async def test_streams_text_and_usage(fake: FakeOpenAI) -> None:
    fake.script = [sse(TEXT_STREAM)]
    provider, sleeps = make_provider(fake)
    events = await collect(provider, simple_request())
    assert events == [
        TextChunk("Your"),
        TextChunk(" refund"),
        TextChunk(" is on its way \u2014 3\u20135 days."),
        UsageReport(prompt_tokens=87, completion_tokens=12, model=MODEL),
    ]
    assert provider.model_name == MODEL
    as_protocol: ModelProvider = provider  # statically checks protocol conformance
    assert as_protocol is provider
    assert sleeps.delays == []


async def test_bytes_split_at_arbitrary_boundaries(fake: FakeOpenAI) -> None:
    # 7-byte writes cut through `data:` prefixes, JSON, multi-byte UTF-8 and the blank
    # lines between events; SSE comments (keep-alives) must be ignored.
    fake.script = [sse([b": keep-alive\n\n", *TEXT_STREAM], split=7)]
    provider, _ = make_provider(fake)
    events = await collect(provider, simple_request())
    text = "".join(e.text for e in events if isinstance(e, TextChunk))
    assert text == "Your refund is on its way \u2014 3\u20135 days."
    assert events[-1] == UsageReport(87, 12, MODEL)


async def test_parallel_tool_calls_with_interleaved_fragments(fake: FakeOpenAI) -> None:
    def call_delta(index: int, args: str, **first: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"index": index, "function": {"arguments": args}}
        if first:
            entry["id"] = first["id"]
            entry["type"] = "function"
            entry["function"] = {"name": first["name"], "arguments": args}
        return {"tool_calls": [entry]}

    parts = [
        chunk({"role": "assistant", "content": None, "refusal": None}),
        chunk(call_delta(0, "", id="call_q1", name="lookup_order")),
        chunk(call_delta(1, "", id="call_q2", name="get_refund_policy")),
        chunk(call_delta(0, '{"ord')),
        chunk(call_delta(1, '{"reg')),
        chunk(call_delta(0, 'er_id": "A-')),
        chunk(call_delta(1, 'ion": "E')),
        chunk(call_delta(0, '1042"}')),
        chunk(call_delta(1, 'U", "item": "shoes \\u00e9"}')),
        chunk({}, finish_reason="tool_calls"),
        chunk(no_choices=True, usage=USAGE),
        DONE,
    ]
    fake.script = [sse(parts)]
    provider, _ = make_provider(fake)
    events = await collect(provider, simple_request())

    begins = [e for e in events if isinstance(e, ToolCallBegin)]
    assert begins == [
        ToolCallBegin("call_q1", "lookup_order"),
        ToolCallBegin("call_q2", "get_refund_policy"),
    ]
    args: dict[str, str] = {"call_q1": "", "call_q2": ""}
    for e in events:
        if isinstance(e, ToolCallArgsChunk):
            args[e.id] += e.delta
    assert json.loads(args["call_q1"]) == {"order_id": "A-1042"}
    assert json.loads(args["call_q2"]) == {"region": "EU", "item": "shoes \u00e9"}
    # Each call's Begin precedes its fragments; both Done after all fragments, in index
    # order; usage last.
    assert events[-3:] == [
        ToolCallDone("call_q1"),
        ToolCallDone("call_q2"),
        UsageReport(87, 12, MODEL),
    ]
    first_frag = next(i for i, e in enumerate(events) if isinstance(e, ToolCallArgsChunk))
    assert first_frag > events.index(ToolCallBegin("call_q2", "get_refund_policy"))
    assert not any(isinstance(e, TextChunk) for e in events)


async def test_stream_without_finish_reason_or_usage_is_closed_and_estimated(
    fake: FakeOpenAI,
) -> None:
    # Some compatible servers send no finish_reason, no usage and no [DONE].
    parts = [
        chunk({"role": "assistant", "content": "Checking"}),
        chunk({"tool_calls": [{"index": 0, "id": "call_z", "function": {"name": "lookup"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
    ]
    fake.script = [sse(parts)]
    provider, _ = make_provider(fake)
    events = await collect(provider, simple_request())
    assert events[:4] == [
        TextChunk("Checking"),
        ToolCallBegin("call_z", "lookup"),
        ToolCallArgsChunk("call_z", "{}"),
        ToolCallDone("call_z"),
    ]
    usage = events[4]
    assert isinstance(usage, UsageReport)
    assert usage.model == MODEL
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0


async def test_mid_stream_error_event(fake: FakeOpenAI) -> None:
    parts = [
        chunk({"role": "assistant", "content": "Hel"}),
        b'data: {"error":{"message":"The server had an error while processing your request.",'
        b'"type":"server_error","param":null,"code":null}}\n\n',
    ]
    fake.script = [sse(parts)]
    provider, sleeps = make_provider(fake)
    seen: list[ProviderEvent] = []
    with pytest.raises(ProviderError, match=r"mid-stream \(server_error\)"):
        async for event in provider.generate(simple_request()):
            seen.append(event)
    assert seen == [TextChunk("Hel")]
    assert len(fake.requests) == 1 and sleeps.delays == []  # never retried after streaming


# --- request shape ---------------------------------------------------------------------


async def test_request_body_shape_and_auth_header(fake: FakeOpenAI) -> None:
    fake.script = [sse(TEXT_STREAM)]
    provider, _ = make_provider(fake, temperature=0.2, extra_headers=(("X-Tenant", "acme"),))
    request = GenerationRequest(
        instructions="You are Acme's support agent.",
        context={
            "plan": ContextEntry(label="Customer plan", type="string", value="pro"),
            "orders": ContextEntry(label="", type="json", value=[{"id": "A-1042", "total": 59}]),
        },
        traits={"tone": "friendly", "lang": "en"},
        behavior_context="Customer is frustrated; apologise once.",
        messages=(
            ChatMessage(role="user", content="Where is order A-1042?", name="jane_doe"),
            ChatMessage(
                role="assistant",
                tool_calls=(ToolCall("call_1", "lookup_order", '{"order_id":"A-1042"}'),),
            ),
            ChatMessage(role="tool", tool_call_id="call_1", content='{"status":"shipped"}'),
            ChatMessage(role="user", content="Thanks!", name="Jane Doe"),  # invalid name
        ),
        tools=(
            ToolSpec(
                name="lookup_order",
                description="Look up an order by id.",
                parameters={
                    "type": "object",
                    "properties": {"order_id": {"type": "string"}},
                    "required": ["order_id"],
                },
            ),
            ToolSpec(name="handoff", description="Hand off to a human."),
        ),
    )
    await collect(provider, request)

    assert fake.headers[0]["Authorization"] == f"Bearer {API_KEY}"
    assert fake.headers[0]["X-Tenant"] == "acme"
    body = fake.requests[0]
    assert body["model"] == MODEL
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.2
    assert body["messages"] == [
        {
            "role": "system",
            "content": "You are Acme's support agent.\n\n"
            'Context:\n- Customer plan: pro\n- orders: [{"id":"A-1042","total":59}]\n\n'
            'Traits: {"tone":"friendly","lang":"en"}\n\n'
            "Behavior: Customer is frustrated; apologise once.",
        },
        {"role": "user", "content": "Where is order A-1042?", "name": "jane_doe"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup_order", "arguments": '{"order_id":"A-1042"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"status":"shipped"}'},
        {"role": "user", "content": "Thanks!"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "lookup_order",
                "description": "Look up an order by id.",
                "parameters": {
                    "type": "object",
                    "properties": {"order_id": {"type": "string"}},
                    "required": ["order_id"],
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": "handoff",
                "description": "Hand off to a human.",
                "parameters": {"type": "object", "properties": {}},
            },
        },
    ]


async def test_no_tools_no_system_when_empty(fake: FakeOpenAI) -> None:
    fake.script = [sse(TEXT_STREAM)]
    provider, _ = make_provider(fake)
    await collect(provider, simple_request())
    body = fake.requests[0]
    assert "tools" not in body and "temperature" not in body
    assert body["messages"] == [{"role": "user", "content": "Where is my refund?"}]


# --- retries ---------------------------------------------------------------------------


async def test_429_honours_retry_after_then_succeeds(fake: FakeOpenAI) -> None:
    fake.script = [
        error(
            429,
            openai_error(
                "Rate limit reached for gpt-4o-mini in organization org-x on requests per min.",
                "requests",
                "rate_limit_exceeded",
            ),
            headers={"Retry-After": "2"},
        ),
        sse(TEXT_STREAM),
    ]
    provider, sleeps = make_provider(fake)
    events = await collect(provider, simple_request())
    assert sleeps.delays == [2.0]
    assert len(fake.requests) == 2
    assert events[0] == TextChunk("Your")


async def test_retry_after_http_date(fake: FakeOpenAI) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    fake.script = [
        error(429, openai_error("slow down", "requests"), {"Retry-After": when}),
        sse(TEXT_STREAM),
    ]
    provider, sleeps = make_provider(fake)
    await collect(provider, simple_request())
    assert len(sleeps.delays) == 1 and 25 < sleeps.delays[0] <= 31


async def test_retry_after_too_long_fails_fast(fake: FakeOpenAI) -> None:
    fake.script = [error(429, openai_error("quota", "requests"), {"Retry-After": "3600"})]
    provider, sleeps = make_provider(fake)
    with pytest.raises(ProviderError, match="HTTP 429") as info:
        await collect(provider, simple_request())
    assert info.value.retryable
    assert sleeps.delays == [] and len(fake.requests) == 1


async def test_5xx_twice_then_success_with_jittered_backoff(fake: FakeOpenAI) -> None:
    fake.script = [
        error(500, openai_error("The server had an error.", "server_error")),
        error(502, "<html><body>Bad gateway</body></html>"),
        sse(TEXT_STREAM),
    ]
    provider, sleeps = make_provider(fake)
    events = await collect(provider, simple_request())
    # rand() = 0.5 → half of base * 2**attempt (0.5s, 1s).
    assert sleeps.delays == [0.25, 0.5]
    assert len(fake.requests) == 3
    assert isinstance(events[-1], UsageReport)


async def test_backoff_is_capped(fake: FakeOpenAI) -> None:
    fake.script = [error(503, openai_error("overloaded", "server_error"))]
    provider, sleeps = make_provider(fake, max_retries=6, backoff_base_s=1.0, backoff_max_s=4.0)
    with pytest.raises(ProviderError):
        await collect(provider, simple_request())
    assert sleeps.delays == [0.5, 1.0, 2.0, 2.0, 2.0, 2.0]


async def test_400_is_not_retried(fake: FakeOpenAI) -> None:
    fake.script = [
        error(
            400,
            openai_error(
                "Invalid parameter: messages with role 'tool' must be a response to a "
                "preceeding message with 'tool_calls'.",
                "invalid_request_error",
            ),
        )
    ]
    provider, sleeps = make_provider(fake)
    with pytest.raises(ProviderError) as info:
        await collect(provider, simple_request())
    message = str(info.value)
    assert "HTTP 400" in message and "invalid_request_error" in message
    assert "role 'tool'" in message
    assert not info.value.retryable
    assert len(fake.requests) == 1 and sleeps.delays == []


async def test_retries_exhausted(fake: FakeOpenAI) -> None:
    fake.script = [error(503, openai_error("Service overloaded", "server_error"))]
    provider, sleeps = make_provider(fake, max_retries=2)
    with pytest.raises(ProviderError, match=r"HTTP 503 \(server_error\)") as info:
        await collect(provider, simple_request())
    assert info.value.retryable
    assert len(fake.requests) == 3 and len(sleeps.delays) == 2


async def test_connection_refused_is_retried_then_fails() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = OpenAIConfig(model=MODEL, api_key=API_KEY, base_url=f"http://127.0.0.1:{port}/v1")
    sleeps = Sleeps()
    provider = OpenAIProvider(config, sleep=sleeps, rand=lambda: 1.0)
    with pytest.raises(ProviderError, match="could not connect") as info:
        await collect(provider, simple_request())
    assert info.value.retryable
    assert sleeps.delays == [0.5, 1.0, 2.0]


async def test_json_200_without_stream_is_an_error(fake: FakeOpenAI) -> None:
    fake.script = [error(200, openai_error("model not loaded", "not_found_error"))]
    provider, _ = make_provider(fake)
    with pytest.raises(ProviderError, match=r"without streaming \(not_found_error\)"):
        await collect(provider, simple_request())


# --- secrets ---------------------------------------------------------------------------


async def test_api_key_never_in_errors_or_logs(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.script = [
        error(500, openai_error("oops", "server_error")),
        error(
            401,
            openai_error(
                f"Incorrect API key provided: {API_KEY}. Also seen as sk-test-***CRET. "
                "You can find your API key at https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            ),
        ),
    ]
    provider, _ = make_provider(fake)
    with pytest.raises(ProviderError) as info:
        await collect(provider, simple_request())
    assert fake.headers[0]["Authorization"] == f"Bearer {API_KEY}"
    message = str(info.value)
    assert "HTTP 401" in message and "invalid_request_error" in message
    assert API_KEY not in message and "sk-test" not in message
    assert API_KEY not in repr(provider.config)
    assert API_KEY not in caplog.text
    assert "HTTP 500" in caplog.text  # the retry was logged, just without secrets


# --- timeouts and cancellation ---------------------------------------------------------


async def test_stalled_stream_raises(fake: FakeOpenAI) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        response = await _start_sse(request)
        await response.write(chunk({"role": "assistant", "content": "Let me"}))
        await fake.release.wait()
        return response

    fake.script = [stall]
    provider, sleeps = make_provider(fake, read_timeout_s=0.3)
    seen: list[ProviderEvent] = []
    started = time.monotonic()
    with pytest.raises(ProviderError, match="upstream stalled"):
        async for event in provider.generate(simple_request()):
            seen.append(event)
    assert time.monotonic() - started < 3
    assert seen == [TextChunk("Let me")]
    assert len(fake.requests) == 1 and sleeps.delays == []


def _endless(fake: FakeOpenAI) -> Responder:
    """Two chunks, then keep-alives until writing fails because the client left."""

    async def respond(request: web.Request) -> web.StreamResponse:
        response = await _start_sse(request)
        try:
            await response.write(chunk({"role": "assistant", "content": ""}))
            await response.write(chunk({"content": "Working on it"}))
            while not fake.release.is_set():
                await asyncio.sleep(0.05)
                await response.write(b": keep-alive\n\n")
        except ConnectionError:
            fake.client_gone.set()  # the client closed its end: exactly what we wait for
        except asyncio.CancelledError:
            fake.client_gone.set()
            raise
        return response

    return respond


@pytest.mark.parametrize("shared_session", [False, True])
async def test_cancellation_closes_upstream(fake: FakeOpenAI, shared_session: bool) -> None:
    async with aiohttp.ClientSession() as session:
        fake.script = [_endless(fake)]
        provider, _ = make_provider(fake, session=session if shared_session else None)
        first = asyncio.Event()

        async def consume() -> None:
            async for event in provider.generate(simple_request()):
                if isinstance(event, TextChunk):
                    first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 5)
        await asyncio.sleep(0.1)  # a few keep-alives flow: the stream is really open
        assert not fake.client_gone.is_set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # With a shared session only response.close() can have dropped the connection.
        await asyncio.wait_for(fake.client_gone.wait(), 2)


async def test_generator_aclose_closes_upstream(fake: FakeOpenAI) -> None:
    async with aiohttp.ClientSession() as session:
        fake.script = [_endless(fake)]
        provider, _ = make_provider(fake, session=lambda: session)
        stream = provider.generate(simple_request())
        assert await anext(stream) == TextChunk("Working on it")
        await stream.aclose()
        await asyncio.wait_for(fake.client_gone.wait(), 2)


# --- configuration ---------------------------------------------------------------------


def test_from_options_env_fallback() -> None:
    env = {"OPENAI_API_KEY": "sk-env", "OPENAI_BASE_URL": "http://llm.internal:8000/v1/"}
    config = OpenAIConfig.from_options({"model": "llama-3.1-8b"}, env)
    assert config.api_key == "sk-env"
    assert config.base_url == "http://llm.internal:8000/v1"
    assert (config.connect_timeout_s, config.read_timeout_s, config.max_retries) == (10, 60, 3)
    assert (config.backoff_base_s, config.backoff_max_s, config.temperature) == (0.5, 8, None)


def test_from_options_explicit_values_win() -> None:
    env = {"OPENAI_API_KEY": "sk-env", "MY_KEY": "sk-mine", "MY_URL": "http://ignored/v1"}
    config = OpenAIConfig.from_options(
        {
            "kind": "openai",
            "model": "gpt-4o",
            "api_key_env": "MY_KEY",
            "base_url_env": "MY_URL",
            "base_url": "https://gateway.example.com/openai/v1",
            "read_timeout_s": 15,
            "connect_timeout_s": 2.5,
            "max_retries": 0,
            "temperature": 0.3,
            "headers": {"OpenAI-Organization": "org-1"},
        },
        env,
    )
    assert config.api_key == "sk-mine"
    assert config.base_url == "https://gateway.example.com/openai/v1"
    assert config.read_timeout_s == 15.0 and config.connect_timeout_s == 2.5
    assert config.max_retries == 0 and config.temperature == 0.3
    assert config.extra_headers == (("OpenAI-Organization", "org-1"),)
    assert OpenAIConfig.from_options({"model": "m", "api_key": "sk-opt"}, env).api_key == "sk-opt"


def test_local_server_needs_no_key() -> None:
    config = OpenAIConfig.from_options(
        {"model": "qwen", "base_url": "http://localhost:11434/v1"}, {}
    )
    assert config.api_key == ""


@pytest.mark.parametrize(
    ("options", "field_name"),
    [
        ({}, "model"),
        ({"model": ""}, "model"),
        ({"model": "m", "api_key": "k", "read_timeout_s": 0}, "read_timeout_s"),
        ({"model": "m", "api_key": "k", "connect_timeout_s": "10"}, "connect_timeout_s"),
        ({"model": "m", "api_key": "k", "read_timeout_s": True}, "read_timeout_s"),
        ({"model": "m", "api_key": "k", "max_retries": -1}, "max_retries"),
        ({"model": "m", "api_key": "k", "max_retries": 1.5}, "max_retries"),
        ({"model": "m", "api_key": "k", "temperature": 3}, "temperature"),
        ({"model": "m", "api_key": "k", "base_url": "ftp://x"}, "base_url"),
        ({"model": "m", "api_key": 42}, "api_key"),
        ({"model": "m", "api_key": "k", "headers": {"X": 1}}, "headers"),
        ({"model": "m", "api_key": "k", "backoff_base_s": 4, "backoff_max_s": 1}, "backoff_max_s"),
        ({"model": "m", "api_key": "k", "modle": "typo"}, "modle"),
        ({"model": "m"}, "api_key"),  # public endpoint without a key
    ],
)
def test_from_options_rejects_bad_values(options: dict[str, Any], field_name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field_name}: "):
        OpenAIConfig.from_options(options, {})


async def test_agents_share_the_pooled_session(fake: FakeOpenAI) -> None:
    """A provider built for an agent uses the process's pooled session: model steps
    reuse a kept-alive connection instead of a handshake each."""
    from core.agents.definition import parse_agent
    from core.providers.registry import build_provider

    peers: list[Any] = []
    respond = sse(TEXT_STREAM)

    async def recording(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        return await respond(request)

    fake.script = [recording]
    agent = parse_agent({"name": "pooled", "slug": "pooled", "provider": {
        "kind": "openai", "model": MODEL, "api_key": API_KEY, "base_url": fake.base_url}})
    provider = build_provider(agent, "agent-pooled")
    assert isinstance(provider, OpenAIProvider)
    for _ in range(3):
        await collect(provider, simple_request())
    assert len(peers) == 3 and len(set(peers)) == 1


# --- pricing end to end ------------------------------------------------------------------


async def test_a_turn_from_the_fake_is_priced_under_the_configured_model(
    fake: FakeOpenAI, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """The README's price for `gpt-4o-mini` applies to a turn the server answered as
    `gpt-4o-mini-2024-07-18`; a model without a price is logged and counted."""
    from core.flows.store import ModelPrice, flow_store
    from core.pricing import usd_to_micros
    from harness import Harness

    sb = await Harness.start(tmp_path)
    try:
        await sb.apply_agent({"name": "gpt", "slug": "gpt", "provider": {
            "kind": "openai", "model": MODEL, "api_key": API_KEY,
            "base_url": fake.base_url, "max_retries": 0}})
        await flow_store(sb.core.store).set_model_price(sb.org_id, ModelPrice(
            MODEL, usd_to_micros("0.15"), usd_to_micros("0.60")), sb.core.clock.now())
        fake.script = [sse(TEXT_STREAM)]
        reply = await sb.chat_once("Where is my refund?", agent="gpt")
        usage = reply.completed.usage
        assert (usage.prompt_tokens, usage.completion_tokens) == (87, 12)
        assert usage.cost_micros == 20  # 87 * 0.15 + 12 * 0.60 = 20.25 micros
        assert sb.core.pricing.unpriced_turns == 0
        # A dated configured name matches the family's price too.
        await sb.apply_agent({"name": "gpt", "slug": "gpt", "provider": {
            "kind": "openai", "model": SERVED_MODEL, "api_key": API_KEY,
            "base_url": fake.base_url, "max_retries": 0}})
        fake.script = [sse(TEXT_STREAM)]
        dated = await sb.chat_once("Where is my refund?", agent="gpt")
        assert dated.completed.usage.cost_micros == 20
        # No price at all: cost 0, logged, counted.
        await sb.apply_agent({"name": "gpt", "slug": "gpt", "provider": {
            "kind": "openai", "model": "llama-3.1-8b", "api_key": API_KEY,
            "base_url": fake.base_url, "max_retries": 0}})
        fake.script = [sse(TEXT_STREAM)]
        with caplog.at_level(logging.WARNING, logger="switchboard.pricing"):
            free = await sb.chat_once("Where is my refund?", agent="gpt")
        assert free.completed.usage.cost_micros == 0
        assert sb.core.pricing.unpriced_turns == 1
        assert any("llama-3.1-8b" in r.getMessage() and "no price" in r.getMessage()
                   for r in caplog.records)
    finally:
        await sb.stop()
