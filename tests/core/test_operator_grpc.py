"""OperatorService and ListenService over real gRPC: the queue, the claim race (exactly one
OK, the rest ABORTED), operator messages on the visitor's ListenConversation stream and
visitor messages on WatchHandoffs, release, and the statuses of refusals."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from core.domain import KeyKind
from harness import SECRET, WIDGET, Harness, auth
from switchboard.v1 import chat_pb2, operator_pb2, operator_pb2_grpc

WAIT_S = 10.0


async def _livehelp(sb: Harness) -> str:
    await sb.scripted_agent("helper", reply="bot words")
    reply = await sb.chat_once("a person please", agent="helper", key=WIDGET, mode="livehelp")
    assert reply.completed.routing.ticket_id
    return reply.conversation_id


async def _next_activity(call: grpc.aio.UnaryStreamCall, kind: str,  # type: ignore[type-arg]
                         ) -> operator_pb2.Activity:
    async with asyncio.timeout(WAIT_S):
        while True:
            message = await call.read()
            assert message is not grpc.aio.EOF
            if message.HasField("activity") and message.activity.kind == kind:
                return message.activity


async def test_the_loop_over_grpc(sb: Harness) -> None:
    operators = operator_pb2_grpc.OperatorServiceStub(sb.channel)
    listen = operator_pb2_grpc.ListenServiceStub(sb.channel)
    conversation = await _livehelp(sb)
    queue = await operators.ListHandoffs(operator_pb2.ListHandoffsRequest(), metadata=auth())
    assert [(h.conversation_id, h.state) for h in queue.handoffs] == [
        (conversation, operator_pb2.HANDOFF_STATE_WAITING)]

    watch = operators.WatchHandoffs(operator_pb2.WatchHandoffsRequest(), metadata=auth())
    visitor = listen.ListenConversation(
        operator_pb2.ListenConversationRequest(conversation_id=conversation),
        metadata=auth(WIDGET))
    assert not (await watch.read()).HasField("activity")  # admitted
    assert not (await visitor.read()).HasField("activity")

    _, token = await sb.core.auth.create_key(sb.org_id, KeyKind.OPERATOR, sb.core.ids,
                                             name="Ann")
    claims = await asyncio.gather(*(operators.ClaimHandoff(
        operator_pb2.ClaimHandoffRequest(conversation_id=conversation),
        metadata=auth(t)) for t in [token] * 1 + [SECRET] * 5), return_exceptions=True)
    won = [c for c in claims if isinstance(c, operator_pb2.ClaimHandoffResponse)]
    lost = [c for c in claims if isinstance(c, grpc.aio.AioRpcError)]
    assert len(won) == 1 and len(lost) == 5
    assert {e.code() for e in lost} == {grpc.StatusCode.ABORTED}
    claimer = token if won[0].handoff.operator_name == "Ann" else SECRET

    state = await _next_activity(visitor, "state")
    assert state.data["state"] == "human"
    await operators.SendOperatorMessage(operator_pb2.SendOperatorMessageRequest(
        conversation_id=conversation, text="hello from a person"), metadata=auth(claimer))
    said = await _next_activity(visitor, "message")
    assert (said.data["role"], said.data["text"]) == ("operator", "hello from a person")

    reply = await sb.chat_once("thanks", key=WIDGET, conversation_id=conversation)
    assert reply.completed.text == "" and reply.completed.routing.ticket_id
    heard = await _next_activity(watch, "message")
    while heard.data["role"] != "user":
        heard = await _next_activity(watch, "message")
    assert heard.data["text"] == "thanks"

    listed = await sb.chat.ListMessages(chat_pb2.ListMessagesRequest(
        conversation_id=conversation), metadata=auth())
    operator_messages = [m for m in listed.messages if m.role == "operator"]
    assert [(m.content, m.operator_name) for m in operator_messages] == [
        ("hello from a person", won[0].handoff.operator_name)]

    await operators.ReleaseHandoff(operator_pb2.ReleaseHandoffRequest(
        conversation_id=conversation), metadata=auth(claimer))
    back = await sb.chat_once("bot?", key=WIDGET, conversation_id=conversation)
    assert back.completed.text == "bot words"
    watch.cancel()
    visitor.cancel()


async def test_refusals_have_their_statuses(sb: Harness) -> None:
    operators = operator_pb2_grpc.OperatorServiceStub(sb.channel)
    listen = operator_pb2_grpc.ListenServiceStub(sb.channel)
    await sb.scripted_agent("helper", reply="x")
    reply = await sb.chat_once("hi", agent="helper", key=WIDGET)
    conversation = reply.conversation_id
    cases = [
        (operators.ClaimHandoff(operator_pb2.ClaimHandoffRequest(
            conversation_id=conversation), metadata=auth()),
         grpc.StatusCode.FAILED_PRECONDITION),
        (operators.ClaimHandoff(operator_pb2.ClaimHandoffRequest(
            conversation_id="chat_nope"), metadata=auth()), grpc.StatusCode.NOT_FOUND),
        (operators.ListHandoffs(operator_pb2.ListHandoffsRequest(), metadata=auth(WIDGET)),
         grpc.StatusCode.PERMISSION_DENIED),
    ]
    for call, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await call
        assert exc.value.code() == code
    stream = listen.ListenConversation(operator_pb2.ListenConversationRequest(
        conversation_id="chat_nope"), metadata=auth(WIDGET))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stream.read()
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
