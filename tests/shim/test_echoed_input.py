"""Errors that quote client input stay within gRPC's metadata limits (quoted values
truncated, lists capped), so they keep their class in every dialect; patterns documented
as `^...$` are full matches."""

from __future__ import annotations

import grpc
import pytest

from core.grpcapi.errors import MAX_MESSAGE_CHARS, MAX_QUOTED_CHARS, MAX_QUOTED_ITEMS
from harness import SECRET, WIDGET, Harness, auth
from switchboard.v1 import chat_pb2

FLOW_SESSIONS = "/api/public/v1/chat/sessions"
FLOW_MESSAGES = "/api/public/v1/chat/messages"


async def session_token(sb: Harness) -> str:
    async with sb.http.post(FLOW_SESSIONS, headers={"Authorization": f"Bearer {WIDGET}"}) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["token"])


async def test_a_huge_origin_with_the_widget_key_is_403(sb: Harness) -> None:
    origin = "https://" + "a" * 6000 + ".example"
    async with sb.http.post("/api/sdk/chat", json={"message": "hi"},
                            headers={"Authorization": f"Bearer {WIDGET}",
                                     "Origin": origin}) as resp:
        body = await resp.json()
        assert resp.status == 403, body
        assert body["error"]["code"] == "origin_not_allowed"
        assert len(body["error"]["message"]) <= MAX_MESSAGE_CHARS


async def test_twenty_long_bad_variable_keys_are_422_with_capped_details(sb: Harness) -> None:
    token = await session_token(sb)
    variables = {f"Bad-{i:02d}-" + "x" * 292: 1 for i in range(20)}
    async with sb.http.post(FLOW_MESSAGES, json={
            "text": "hi", "intentName": "order_status", "variables": variables},
            headers={"Authorization": f"Bearer {token}"}) as resp:
        body = await resp.json()
        assert resp.status == 422, body
        assert body["error"]["code"] == "validation_failed"
        details = body["error"]["details"]
        assert 1 <= len(details) <= MAX_QUOTED_ITEMS
        assert all(len(d["field"]) <= MAX_QUOTED_CHARS + 20 for d in details)


@pytest.mark.parametrize("key", ["abc\n", "Abc", "a" * 65])
async def test_variable_keys_are_full_matches(sb: Harness, key: str) -> None:
    token = await session_token(sb)
    async with sb.http.post(FLOW_MESSAGES, json={
            "text": "hi", "intentName": "order_status", "variables": {key: 1}},
            headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 422, await resp.text()


async def test_a_tool_name_with_a_trailing_newline_is_invalid(sb: Harness) -> None:
    await sb.scripted_agent(reply="ok")
    tool = chat_pb2.ToolDefinition(name="lookup\n", description="x")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sb.chat.Chat(chat_pb2.ChatRequest(turn=chat_pb2.TurnInput(
            message="hi", agent="scripted", client_tools=[tool])), metadata=auth(SECRET))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_status_whose_details_cannot_be_decoded_keeps_its_class() -> None:
    from google.rpc import code_pb2, status_pb2

    from shim import halo_errors
    from shim.core_client import decode_error

    mismatched = status_pb2.Status(code=code_pb2.NOT_FOUND, message="x").SerializeToString()
    for details in (b"\xff\x00 not a Status", mismatched):
        exc = grpc.aio.AioRpcError(
            grpc.StatusCode.PERMISSION_DENIED, grpc.aio.Metadata(),
            grpc.aio.Metadata(("grpc-status-details-bin", details)), "denied")
        error = decode_error(exc)
        assert error.code == "PERMISSION_DENIED" and error.reason == ""
        assert halo_errors.status_and_code(error)[0] == 403
