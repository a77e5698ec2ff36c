"""The slug chat API over real HTTP: envelopes, conversations, SSE framing, errors."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from core.errors import Reason
from core.providers.scripted import split_tokens
from harness import SECRET, WIDGET, Harness, auth
from shim import slug, status_map
from shim.core_client import CoreError
from switchboard.v1 import chat_pb2, events_pb2

PATH = "/v1/api/chat/{}"


def bearer(key: str = SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def post(sb: Harness, agent: str, body: Any, key: str | None = SECRET,
               path: str = PATH) -> tuple[int, dict[str, Any], Any]:
    headers = bearer(key) if key else {}
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    async with sb.http.post(path.format(agent), data=data, headers={
        **headers, "Content-Type": "application/json"}) as resp:
        return resp.status, dict(resp.headers), await resp.json()


async def post_raw(sb: Harness, agent: str, body: dict[str, Any],
                   key: str = SECRET) -> tuple[aiohttp.ClientResponse, bytes]:
    async with sb.http.post(PATH.format(agent), json=body, headers=bearer(key)) as resp:
        return resp, await resp.read()


def blocks(raw: bytes) -> list[list[str]]:
    """SSE events as their lines (comments included), split on the blank line."""
    text = raw.decode("utf-8")
    assert text.endswith("\n\n"), "every event ends with a blank line"
    return [block.split("\n") for block in text[:-2].split("\n\n")]


# -- success ------------------------------------------------------------------------------


async def test_basic_chat_with_the_demo_agent(sb: Harness) -> None:
    status, _, body = await post(sb, "support-agent",
                                 {"message": "What are your business hours?", "stream": False})
    assert status == 200
    assert body["error"] is None
    data = body["data"]
    assert set(data) == {"response", "conversationId", "metadata"}
    assert "monday to friday, 8:00 to 18:00" in data["response"].lower()
    assert re.fullmatch(r"conv_[0-9a-f]{32}", data["conversationId"])
    assert data["metadata"]["model"] == "kb"
    assert isinstance(data["metadata"]["tokens"], int) and data["metadata"]["tokens"] > 0


async def test_both_routes_and_conversation_continues(sb: Harness) -> None:
    await sb.scripted_agent("echo-bot", reply="echo {message}")
    _, _, first = await post(sb, "echo-bot", {"message": "one", "conversationId": None})
    conversation = first["data"]["conversationId"]
    _, _, second = await post(sb, "echo-bot", {"message": "two", "conversationId": conversation},
                              path="/chat/{}")
    assert second["data"] == {
        "response": "echo two", "conversationId": conversation,
        "metadata": {"model": "scripted", "tokens": second["data"]["metadata"]["tokens"]},
    }
    # Another dialect's rendering of the same conversation is accepted and rendered back.
    canonical = str(uuid.UUID(conversation.removeprefix("conv_")))
    for other in (canonical, "chat_" + canonical):
        _, _, again = await post(sb, "echo-bot", {"message": "three", "conversationId": other})
        assert again["data"]["conversationId"] == conversation
    listed = await sb.chat.ListMessages(
        chat_pb2.ListMessagesRequest(conversation_id=conversation), metadata=auth())
    assert [m.content for m in listed.messages if m.role == "user"] == ["one", "two", "three",
                                                                        "three"]


async def test_slug_derived_from_the_agent_name(sb: Harness) -> None:
    await sb.apply_agent({"name": "Customer Support", "provider": {"kind": "scripted",
                                                                   "reply": "hi"}})
    status, _, body = await post(sb, "customer-support", {"message": "hello"})
    assert status == 200 and body["data"]["response"] == "hi"


# -- streaming ----------------------------------------------------------------------------


async def test_stream_framing_byte_for_byte(sb: Harness) -> None:
    reply = "Hello there! How can I help?"
    await sb.scripted_agent("greeter", reply=reply)
    resp, raw = await post_raw(sb, "greeter", {"message": "Hello", "stream": True})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["X-Accel-Buffering"] == "no"
    assert re.fullmatch(r"conv_[0-9a-f]{32}", resp.headers["X-Conversation-Id"])
    events = blocks(raw)
    ids = [int(lines[0].removeprefix("id: ")) for lines in events]
    assert all(lines[0].startswith("id: ") and len(lines) == 2 for lines in events)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert ids[0] == 2  # seq 1 is the turn-started event, which this dialect does not show
    data = [lines[1] for lines in events]
    assert data == [f'data: {{"chunk": {json.dumps(t)}}}' for t in split_tokens(reply)] + [
        "data: [DONE]"]
    # The exact bytes of the first event, as the spec shows them.
    assert raw.startswith(b'id: 2\ndata: {"chunk": "Hello"}\n\n')
    assert raw.endswith(b"data: [DONE]\n\n")


async def test_stream_keeps_unicode_as_utf8(sb: Harness) -> None:
    await sb.scripted_agent("unicode", reply="Sunny, 25°C ☀")
    _, raw = await post_raw(sb, "unicode", {"message": "weather?", "stream": True})
    assert 'data: {"chunk": " 25°C"}'.encode() in raw


async def test_stream_error_before_first_byte_gets_status_and_envelope(sb: Harness) -> None:
    resp, raw = await post_raw(sb, "no-such-agent", {"message": "hi", "stream": True})
    assert resp.status == 404
    assert resp.headers["Content-Type"].startswith("application/json")
    assert json.loads(raw) == {"data": None, "error": {
        "name": "NotFoundError", "message": "Agent with slug 'no-such-agent' not found",
        "details": {}}}


async def test_stream_error_after_headers_is_one_event_then_close(sb: Harness) -> None:
    await sb.apply_agent({"name": "down", "provider": {
        "kind": "openai", "model": "m", "base_url": "http://127.0.0.1:9", "max_retries": 0}})
    resp, raw = await post_raw(sb, "down", {"message": "hi", "stream": True})
    assert resp.status == 200
    events = blocks(raw)
    assert len(events) == 1
    assert events[0][0].startswith("id: ")
    body = json.loads(events[0][1].removeprefix("data: "))
    assert body["data"] is None
    assert body["error"]["name"] == "ServiceUnavailableError"
    assert b"[DONE]" not in raw


async def test_disconnect_mid_stream_cancels_the_turn(sb: Harness) -> None:
    await sb.scripted_agent("slow", reply=" ".join(f"w{i}" for i in range(300)), delay_ms=20)
    conversation = ""
    async with sb.http.post(PATH.format("slow"), json={"message": "go", "stream": True},
                            headers=bearer()) as resp:
        conversation = resp.headers["X-Conversation-Id"]
        seen = 0
        async for _line in resp.content:
            seen += 1
            if seen >= 9:  # a few events in
                break
        resp.close()  # the client goes away mid-stream
    canonical = str(uuid.UUID(conversation.removeprefix("conv_")))
    for _ in range(100):
        if sb.core.engine.live.get(canonical) is None:
            break
        await asyncio.sleep(0.05)
    assert sb.core.engine.live.get(canonical) is None, "generation kept running"
    listed = await sb.chat.ListMessages(
        chat_pb2.ListMessagesRequest(conversation_id=canonical), metadata=auth())
    assistant = [m for m in listed.messages if m.role == "assistant"]
    assert len(assistant) == 1
    assert assistant[0].status == events_pb2.TURN_STATUS_CANCELLED
    assert 0 < len(assistant[0].content.split()) < 300


# -- errors -------------------------------------------------------------------------------


def spec_error(name: str, message: str) -> dict[str, Any]:
    return {"data": None, "error": {"name": name, "message": message, "details": {}}}


@pytest.mark.parametrize("body", [{}, {"message": None}, {"message": ""}, {"message": "   "},
                                  {"stream": True}])
async def test_missing_message_is_the_spec_validation_error(sb: Harness,
                                                            body: dict[str, Any]) -> None:
    status, _, got = await post(sb, "support-agent", body)
    assert status == 400
    assert got == spec_error("ValidationError", "Message field is required")


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"text"', b"\xff\xfe"])
async def test_malformed_json_is_400_never_500(sb: Harness, raw: bytes) -> None:
    status, _, got = await post(sb, "support-agent", raw)
    assert status == 400
    assert got["data"] is None and got["error"]["name"] == "ValidationError"


@pytest.mark.parametrize("body", [{"message": 5}, {"message": "x", "stream": "yes"},
                                  {"message": "x", "conversationId": 12}])
async def test_wrong_field_types_are_validation_errors(sb: Harness, body: dict[str, Any]) -> None:
    status, _, got = await post(sb, "support-agent", body)
    assert status == 400 and got["error"]["name"] == "ValidationError"


@pytest.mark.parametrize("key", [None, "sk_wrong", "not a bearer"])
async def test_bad_key_is_the_spec_unauthorized_error(sb: Harness, key: str | None) -> None:
    status, _, got = await post(sb, "support-agent", {"message": "hi"}, key=key)
    assert status == 401
    assert got == spec_error("UnauthorizedError", "Invalid or missing API token")


async def test_unknown_slug_is_the_spec_not_found_error(sb: Harness) -> None:
    status, _, got = await post(sb, "support-agnet", {"message": "hi"})
    assert status == 404
    assert got == spec_error("NotFoundError", "Agent with slug 'support-agnet' not found")


async def test_publishable_key_is_forbidden_on_the_server_side_api(sb: Harness) -> None:
    status, _, got = await post(sb, "support-agent", {"message": "hi"}, key=WIDGET)
    assert status == 403
    assert got["error"]["name"] == "ForbiddenError"


async def test_unknown_conversation_is_not_found(sb: Harness) -> None:
    status, _, got = await post(sb, "support-agent", {
        "message": "hi", "conversationId": "conv_" + "0" * 31 + "1"})
    assert status == 404 and got["error"]["name"] == "NotFoundError"


async def test_message_length_limit_in_the_envelope(sb: Harness) -> None:
    from core import limits

    await sb.scripted_agent("ok-bot", reply="ok")
    status, _, _ = await post(sb, "ok-bot", {"message": "é" * limits.MAX_MESSAGE_CHARS})
    assert status == 200
    status, _, got = await post(sb, "ok-bot", {"message": "é" * (limits.MAX_MESSAGE_CHARS + 1)})
    assert status == 400 and got["error"]["name"] == "ValidationError"


async def test_rate_limit_is_429_with_retry_after(sb: Harness) -> None:
    await sb.scripted_agent("ok-bot", reply="ok")
    org = await sb.core.store.get_org(sb.org_id)
    assert org is not None
    settings = replace(org.settings, extra={**org.settings.extra,
                                            "rate_limit": {"rps": 0.01, "burst": 1}})
    await sb.core.store.update_org_settings(sb.org_id, settings)
    assert (await post(sb, "ok-bot", {"message": "one"}))[0] == 200
    status, headers, got = await post(sb, "ok-bot", {"message": "two"})
    assert status == 429
    assert got["error"]["name"] == "RateLimitError"
    assert int(headers["Retry-After"]) >= 1


async def test_provider_failure_is_503_envelope(sb: Harness) -> None:
    await sb.apply_agent({"name": "down", "provider": {
        "kind": "openai", "model": "m", "base_url": "http://127.0.0.1:9", "max_retries": 0}})
    status, _, got = await post(sb, "down", {"message": "hi"})
    assert status == 503
    assert got["data"] is None and got["error"]["name"] == "ServiceUnavailableError"


# -- the error table ------------------------------------------------------------------------


def test_every_core_reason_is_mapped() -> None:
    missing = {r.value for r in Reason} - set(slug.BY_REASON)
    assert not missing, f"slug error table lacks reasons {sorted(missing)}"


def test_every_grpc_code_is_mapped() -> None:
    import grpc

    missing = {c.name for c in grpc.StatusCode} - set(slug.BY_CODE)
    assert not missing, f"slug error table lacks gRPC codes {sorted(missing)}"


def test_every_mapped_status_has_a_name() -> None:
    statuses = set(slug.BY_REASON.values()) | set(slug.BY_CODE.values())
    assert statuses <= set(slug.ERROR_NAMES)


@pytest.mark.parametrize(("error", "status", "name"), [
    (CoreError("INTERNAL", "internal", "Internal error."), 500, "InternalServerError"),
    (CoreError("UNKNOWN", "", "boom"), 500, "InternalServerError"),
    (CoreError("UNAVAILABLE", "", "connection refused"), 503, "ServiceUnavailableError"),
    (CoreError("RESOURCE_EXHAUSTED", "rate_limited", "slow down", retry_after_s=1.5), 429,
     "RateLimitError"),
    (CoreError("FAILED_PRECONDITION", "interrupt_expired", "expired"), 410, "GoneError"),
])
def test_envelope_for_transport_and_server_errors(error: CoreError, status: int,
                                                  name: str) -> None:
    got_status, body = slug.envelope(error, "x")
    assert (got_status, body["error"]["name"]) == (status, name)
    assert body["data"] is None and body["error"]["details"] == {}
    response = slug.error_response(error, "x")
    assert response.status == status
    if status == 429:
        assert response.headers["Retry-After"] == "2"


@pytest.mark.parametrize("error", [
    CoreError("RESOURCE_EXHAUSTED", "", "CLIENT: Sent message larger than max (55 vs. 50)"),
    CoreError("UNAVAILABLE", "", "failed to connect to all addresses; 10.0.0.7:50051"),
    CoreError("INTERNAL", "", "Exception serializing request!"),
])
def test_transport_errors_never_leak_their_details(error: CoreError) -> None:
    """Without a reason the error is gRPC's own: a generic message for its status."""
    status, body = slug.envelope(error, "x")
    assert body["error"]["message"] == status_map.GENERIC_MESSAGES[status]


@pytest.mark.parametrize(("error", "header"), [
    (CoreError("UNAVAILABLE", "shutting_down", "Server is shutting down; retry shortly."), "1"),
    (CoreError("UNAVAILABLE", "provider_error", "The model provider failed."), "1"),
    (CoreError("UNAVAILABLE", "", "connection refused"), "1"),
    (CoreError("RESOURCE_EXHAUSTED", "rate_limited", "slow down"), "1"),
    (CoreError("RESOURCE_EXHAUSTED", "budget_exceeded", "spent", retry_after_s=7.2), "8"),
])
def test_retryable_statuses_carry_retry_after(error: CoreError, header: str) -> None:
    """The spec tells clients to retry 429s; a 503 is as transient."""
    assert slug.error_response(error, "x").headers["Retry-After"] == header
