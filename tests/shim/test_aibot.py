"""The aibot send-message dialect over real HTTP: typed SSE events, server and client tools,
interrupt and resume, the JSON fold, error envelopes."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from core.errors import Reason
from harness import SECRET, WIDGET, Harness
from shim import aibot, status_map
from shim.core_client import CoreError

PATH = "/v1/aibot/bots/{}/send-message"
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather at the user's location.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]},
}


def headers(key: str = SECRET, accept: str | None = None) -> dict[str, str]:
    out = {"Authorization": f"Bearer {key}"}
    if accept:
        out["Accept"] = accept
    return out


async def send(sb: Harness, agent: str, body: Any, *, key: str = SECRET,
               accept: str | None = None) -> tuple[int, dict[str, str], bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body)
    async with sb.http.post(PATH.format(agent), data=data,
                            headers={**headers(key, accept),
                                     "Content-Type": "application/json"}) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def parse_sse(raw: bytes) -> list[tuple[int | None, Any]]:
    """(id, data) per event; data is JSON-decoded except `[DONE]`. Strict framing. The
    first frame of a terminal event (interrupt, stopped) has no id: only the last frame
    of a core event carries it (see shim.resume)."""
    text = raw.decode("utf-8")
    assert text.endswith("\n\n")
    out: list[tuple[int | None, Any]] = []
    for block in text[:-2].split("\n\n"):
        lines = block.split("\n")
        if lines[0].startswith(":"):
            continue
        event_id = None
        if lines[0].startswith("id: "):
            event_id = int(lines.pop(0).removeprefix("id: "))
        assert len(lines) == 1 and lines[0].startswith("data: ")
        data = lines[0].removeprefix("data: ")
        out.append((event_id, data if data == "[DONE]" else json.loads(data)))
    return out


async def events(sb: Harness, agent: str, body: Any, **kw: Any) -> list[Any]:
    status, _, raw = await send(sb, agent, body, **kw)
    assert status == 200, raw
    parsed = parse_sse(raw)
    ids = [i for i, _ in parsed if i is not None]
    assert ids == sorted(ids)
    return [data for _, data in parsed]


def user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def weather_agent(sb: Harness, *, args_chunk: int = 4) -> None:
    await sb.scripted_agent(
        "weather", reply="It is {tool_results} there.", args_chunk=args_chunk,
        tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris, FR"}}],
    )


async def interrupted(sb: Harness, body: dict[str, Any] | None = None) -> tuple[dict[str, Any],
                                                                                list[Any]]:
    got = await events(sb, "weather", body or {**user("weather?"), "tools": [WEATHER_TOOL]})
    interrupt = got[-2]
    assert interrupt["type"] == "interrupt" and got[-1] == "[DONE]"
    return interrupt, got


# -- text ---------------------------------------------------------------------------------


async def test_text_events_byte_for_byte(sb: Harness) -> None:
    await sb.scripted_agent("hello", reply="Hello! How can I assist you today?")
    status, hdrs, raw = await send(sb, "hello", user("hi"))
    assert status == 200
    assert hdrs["Content-Type"] == "text/event-stream; charset=utf-8"
    assert hdrs["Cache-Control"] == "no-cache" and hdrs["X-Accel-Buffering"] == "no"
    assert re.fullmatch(r"conversation-[0-9a-f-]{36}", hdrs["X-Conversation-Id"])
    assert raw.startswith(b'id: 2\ndata: {"type": "text", "content": "Hello!"}\n\n')
    assert raw.endswith(b"data: [DONE]\n\n")
    got = [d for _, d in parse_sse(raw)]
    assert "".join(e["content"] for e in got[:-1]) == "Hello! How can I assist you today?"
    assert got[-1] == "[DONE]"


async def test_agent_by_id_or_slug_and_history(sb: Harness) -> None:
    agent_id = await sb.scripted_agent("echo", reply="echo {message}")
    body = {"messages": [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "an earlier answer"},
        {"role": "user", "content": [{"type": "text", "text": "second"}]},
    ]}
    for ref in (agent_id, "echo"):
        got = await events(sb, ref, body)
        assert "".join(e["content"] for e in got[:-1]) == "echo second"


async def test_conversation_continues_by_id(sb: Harness) -> None:
    await sb.scripted_agent("echo", reply="echo {message}")
    status, hdrs, _ = await send(sb, "echo", user("one"))
    conversation = hdrs["X-Conversation-Id"]
    status, hdrs2, _ = await send(sb, "echo", {**user("two"), "conversationId": conversation})
    assert status == 200 and hdrs2["X-Conversation-Id"] == conversation


async def test_publishable_key_works_from_an_allowed_origin(sb: Harness) -> None:
    await sb.scripted_agent("echo", reply="ok")
    async with sb.http.post(PATH.format("echo"), json=user("hi"), headers={
            **headers(WIDGET), "Origin": "http://localhost:3000"}) as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
        await resp.read()
    async with sb.http.post(PATH.format("echo"), json=user("hi"), headers={
            **headers(WIDGET), "Origin": "https://evil.example"}) as resp:
        assert resp.status == 403
        assert (await resp.json())["code"] == "origin_not_allowed"


# -- server tools -------------------------------------------------------------------------


async def test_server_tool_streams_calls_then_result(sb: Harness) -> None:
    await sb.apply_agent({"name": "highlighter", "tools": ["highlight"], "provider": {
        "kind": "scripted", "reply": "Done: {tool_results}", "args_chunk": 5,
        "tool_calls": [{"name": "highlight", "arguments": {"selector": "#pricing"}}]}})
    got = await events(sb, "highlighter", user("show me pricing"))
    kinds = [e["type"] if isinstance(e, dict) else e for e in got]
    first_text = kinds.index("text")
    assert kinds[0] == "tool-call-start" and kinds[first_text - 1] == "tool-result"
    assert kinds[-1] == "[DONE]" and "interrupt" not in kinds
    assert got[0] == {"type": "tool-call-start", "toolCallId": "call_0_0",
                      "toolCallName": "highlight"}
    deltas = [e["delta"] for e in got if e != "[DONE]" and e["type"] == "tool-call-args"]
    assert len(deltas) > 1 and json.loads("".join(deltas)) == {"selector": "#pricing"}
    result = next(e for e in got if e != "[DONE]" and e["type"] == "tool-result")
    assert result == {"type": "tool-result", "result": {"ok": True}, "toolCallId": "call_0_0"}


# -- client tools: interrupt and resume ---------------------------------------------------


async def test_client_tool_interrupt_and_resume_round_trip(sb: Harness) -> None:
    await weather_agent(sb, args_chunk=3)
    interrupt, got = await interrupted(sb)
    types = [e["type"] for e in got[:-1]]
    assert types[0] == "tool-call-start" and types[-2:] == ["tool-call-end", "interrupt"]
    assert "tool-result" not in types and "text" not in types
    deltas = [e["delta"] for e in got[:-1] if e["type"] == "tool-call-args"]
    assert len(deltas) > 3 and json.loads("".join(deltas)) == {"city": "Paris, FR"}
    assert set(interrupt) == {"type", "interruptId", "toolCallIds", "expiresAt"}
    assert interrupt["toolCallIds"] == ["call_0_0"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", interrupt["expiresAt"])

    status, _, raw = await send(sb, "weather", {"resume": {
        "interruptId": interrupt["interruptId"], "payload": {"call_0_0": "Sunny, 25°C"}}})
    assert status == 200
    # The new stream starts with the matching tool result, exactly as the spec shows it.
    assert raw.split(b"\n\n")[0].split(b"\n")[1] == (
        'data: {"type": "tool-result", "result": "Sunny, 25°C", "toolCallId": "call_0_0"}'
    ).encode()
    resumed = [d for _, d in parse_sse(raw)]
    text = "".join(e["content"] for e in resumed if e != "[DONE]" and e["type"] == "text")
    assert text == 'It is "Sunny, 25°C" there.'
    assert resumed[-1] == "[DONE]"


async def test_resume_twice_is_409(sb: Harness) -> None:
    await weather_agent(sb)
    interrupt, _ = await interrupted(sb)
    body = {"resume": {"interruptId": interrupt["interruptId"], "payload": {"call_0_0": 1}}}
    assert (await send(sb, "weather", body))[0] == 200
    status, _, raw = await send(sb, "weather", body)
    assert status == 409
    assert json.loads(raw) == {"type": "error", "status": 409,
                               "code": "interrupt_already_resumed",
                               "message": "This interrupt was already resumed."}


async def test_concurrent_resumes_one_wins(sb: Harness) -> None:
    await weather_agent(sb)
    interrupt, _ = await interrupted(sb)
    body = {"resume": {"interruptId": interrupt["interruptId"], "payload": {"call_0_0": 1}}}
    results = await asyncio.gather(*(send(sb, "weather", body) for _ in range(3)))
    assert sorted(status for status, _, _ in results) == [200, 409, 409]


async def test_unknown_interrupt_is_404(sb: Harness) -> None:
    await weather_agent(sb)
    status, _, raw = await send(sb, "weather", {"resume": {"interruptId": "int_nope",
                                                           "payload": {}}})
    assert status == 404 and json.loads(raw)["code"] == "interrupt_not_found"


async def test_interrupt_of_another_conversation_is_404(sb: Harness) -> None:
    await weather_agent(sb)
    interrupt, _ = await interrupted(sb)
    _, hdrs, _ = await send(sb, "weather", {**user("a different conversation"),
                                            "tools": [WEATHER_TOOL]})
    status, _, raw = await send(sb, "weather", {
        "conversationId": hdrs["X-Conversation-Id"],
        "resume": {"interruptId": interrupt["interruptId"], "payload": {"call_0_0": 1}}})
    assert status == 404 and json.loads(raw)["code"] == "interrupt_not_found"


async def test_resume_with_missing_results_is_400_and_keeps_the_interrupt(sb: Harness) -> None:
    await weather_agent(sb)
    interrupt, _ = await interrupted(sb)
    status, _, raw = await send(sb, "weather", {"resume": {
        "interruptId": interrupt["interruptId"], "payload": {"call_9_9": 1}}})
    assert status == 400 and json.loads(raw)["code"] == "invalid_input"
    status, _, _ = await send(sb, "weather", {"resume": {
        "interruptId": interrupt["interruptId"], "payload": {"call_0_0": {"temp": 25}}}})
    assert status == 200


async def test_demo_agent_client_tool_without_request_tools(sb: Harness) -> None:
    """The demo office-finder declares its client tool itself: curl needs no `tools`."""
    got = await events(sb, "office-finder", user("Where is your nearest office?"))
    interrupt = got[-2]
    assert interrupt["type"] == "interrupt"
    start = got[0]
    assert start["toolCallName"] == "get_browser_location"
    resumed = await events(sb, "office-finder", {"resume": {
        "interruptId": interrupt["interruptId"],
        "payload": {start["toolCallId"]: {"city": "Berlin", "country": "DE"}}}})
    assert resumed[0] == {"type": "tool-result", "result": {"city": "Berlin", "country": "DE"},
                          "toolCallId": start["toolCallId"]}
    text = "".join(e["content"] for e in resumed[:-1] if e["type"] == "text")
    assert "Berlin" in text and resumed[-1] == "[DONE]"


# -- Accept: application/json ---------------------------------------------------------------


async def test_json_fold_of_an_interrupt_and_its_resume(sb: Harness) -> None:
    await weather_agent(sb)
    status, hdrs, raw = await send(sb, "weather", {**user("weather?"), "tools": [WEATHER_TOOL]},
                                   accept="application/json")
    assert status == 200 and hdrs["Content-Type"].startswith("application/json")
    body = json.loads(raw)
    assert body["conversationId"] == hdrs["X-Conversation-Id"]
    assert body["content"] == ""
    assert body["toolCalls"] == [{"toolCallId": "call_0_0", "toolCallName": "get_weather",
                                  "arguments": {"city": "Paris, FR"}}]
    interrupt = body["interrupt"]
    assert set(interrupt) == {"interruptId", "toolCallIds", "expiresAt"}
    status, _, raw = await send(sb, "weather", {"resume": {
        "interruptId": interrupt["interruptId"], "payload": {"call_0_0": "rain"}}},
        accept="application/json")
    body = json.loads(raw)
    assert body["content"] == 'It is "rain" there.'
    assert body["toolCalls"] == [{"toolCallId": "call_0_0", "result": "rain"}]
    assert body["interrupt"] is None


async def test_json_fold_error_keeps_its_status(sb: Harness) -> None:
    status, _, raw = await send(sb, "nobody", user("hi"), accept="application/json")
    assert status == 404 and json.loads(raw)["code"] == "agent_not_found"


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("tools", [
    [{"name": "bad name!", "parameters": {}}],
    [{"name": "x", "parameters": {"type": "nonsense"}}],
    [{"name": "x", "parameters": {"type": "string"}}],
    [{"name": "x"}, {"name": "x"}],
    [{"name": "highlight"}],
    [{"name": "x", "parameters": "not a schema"}],
    "not a list",
])
async def test_invalid_client_tools_are_400(sb: Harness, tools: Any) -> None:
    await sb.apply_agent({"name": "with-server-tool", "tools": ["highlight"],
                          "provider": {"kind": "scripted"}})
    status, _, raw = await send(sb, "with-server-tool", {**user("hi"), "tools": tools})
    assert status == 400
    body = json.loads(raw)
    assert body["type"] == "error" and body["code"] == "invalid_tools"


@pytest.mark.parametrize(("raw", "code"), [
    (b"{nope", "invalid_argument"), (b"[]", "invalid_argument"),
    (b'{"messages": "hi"}', "invalid_argument"), (b'{"messages": [{"content": "x"}]}',
                                                   "invalid_argument"),
    (b'{"messages": []}', "message_required"),
    (b'{"messages": [{"role": "assistant", "content": "only me"}]}', "message_required"),
    (b'{"resume": {"payload": {}}}', "invalid_argument"),
    (b'{"resume": {"interruptId": "i", "payload": [1]}}', "invalid_argument"),
])
async def test_bad_requests_are_400(sb: Harness, raw: bytes, code: str) -> None:
    await sb.scripted_agent("echo")
    status, _, body = await send(sb, "echo", raw)
    assert status == 400 and json.loads(body)["code"] == code


async def test_bad_key_is_401_and_unknown_agent_404(sb: Harness) -> None:
    status, _, raw = await send(sb, "support-agent", user("hi"), key="nope")
    assert status == 401 and json.loads(raw)["code"] == "unauthenticated"
    status, _, raw = await send(sb, "nobody", user("hi"))
    assert status == 404 and json.loads(raw)["code"] == "agent_not_found"


async def test_mid_stream_failure_is_one_error_event(sb: Harness) -> None:
    await sb.apply_agent({"name": "down", "provider": {
        "kind": "openai", "model": "m", "base_url": "http://127.0.0.1:9", "max_retries": 0}})
    status, _, raw = await send(sb, "down", user("hi"))
    assert status == 200
    got = [d for _, d in parse_sse(raw)]
    assert len(got) == 1
    assert got[0]["type"] == "error" and got[0]["status"] == 503
    assert got[0]["code"] == "provider_error"


def test_every_core_reason_is_mapped() -> None:
    missing = {r.value for r in Reason} - set(aibot.BY_REASON)
    assert not missing, f"aibot error table lacks reasons {sorted(missing)}"


def test_every_grpc_code_is_mapped() -> None:
    import grpc

    missing = {c.name for c in grpc.StatusCode} - set(aibot.BY_CODE)
    assert not missing, f"aibot error table lacks gRPC codes {sorted(missing)}"


@pytest.mark.parametrize(("error", "status"), [
    (CoreError("FAILED_PRECONDITION", "interrupt_expired", "expired"), 410),
    (CoreError("INTERNAL", "internal", "Internal error."), 500),
    (CoreError("UNAVAILABLE", "", "core down"), 503),
    (CoreError("RESOURCE_EXHAUSTED", "rate_limited", "slow", retry_after_s=0.2), 429),
])
def test_error_envelope(error: CoreError, status: int) -> None:
    response = aibot.error_response(error)
    assert response.status == status
    body = aibot.error_body(error)
    assert body["type"] == "error" and body["status"] == status
    if status == 429:
        assert response.headers["Retry-After"] == "1"


@pytest.mark.parametrize("error", [
    CoreError("RESOURCE_EXHAUSTED", "", "CLIENT: Sent message larger than max (55 vs. 50)"),
    CoreError("UNAVAILABLE", "", "failed to connect to all addresses; 10.0.0.7:50051"),
    CoreError("INTERNAL", "", "Exception serializing request!"),
])
def test_transport_errors_never_leak_their_details(error: CoreError) -> None:
    """Without a reason the error is gRPC's own: a generic message for its status."""
    body = aibot.error_body(error)
    assert body["message"] == status_map.GENERIC_MESSAGES[body["status"]]


def test_core_messages_are_kept() -> None:
    error = CoreError("INVALID_ARGUMENT", "invalid_tools", "tools[0].name is too long")
    assert aibot.error_body(error)["message"] == "tools[0].name is too long"


def test_every_mapped_status_has_a_generic_message() -> None:
    statuses = set(status_map.BY_REASON.values()) | set(status_map.BY_CODE.values())
    assert statuses <= set(status_map.GENERIC_MESSAGES)
