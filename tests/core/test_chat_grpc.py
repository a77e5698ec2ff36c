"""ChatService over real gRPC: unary, server streaming, bidi, cancellation, limits."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from core import limits
from harness import WIDGET, Harness, auth
from switchboard.v1 import chat_pb2, events_pb2


async def test_unary_chat_stores_reply(sb: Harness) -> None:
    await sb.scripted_agent(reply="Hello there, friend.")
    reply = await sb.chat_once("hi", agent="scripted")
    assert reply.completed.text == "Hello there, friend."
    assert reply.conversation_id
    listed = await sb.chat.ListMessages(
        chat_pb2.ListMessagesRequest(conversation_id=reply.conversation_id), metadata=auth()
    )
    assert [(m.role, m.content) for m in listed.messages] == [
        ("user", "hi"), ("assistant", "Hello there, friend.")
    ]


async def test_stream_chat_events_are_ordered(sb: Harness) -> None:
    await sb.scripted_agent(reply="one two three")
    call = sb.chat.StreamChat(
        chat_pb2.StreamChatRequest(turn=chat_pb2.TurnInput(message="x", agent="scripted")),
        metadata=auth(),
    )
    events = [r.event async for r in call]
    kinds = [e.WhichOneof("kind") for e in events]
    assert kinds[0] == "turn_started" and kinds[-1] == "completed"
    assert "".join(e.text_delta.text for e in events if e.HasField("text_delta")) == (
        "one two three"
    )
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and seqs[0] == 1


async def test_converse_runs_several_turns_on_one_stream(sb: Harness) -> None:
    await sb.scripted_agent(reply="echo {message}")
    queue: asyncio.Queue[chat_pb2.ConverseRequest | None] = asyncio.Queue()

    async def requests():  # type: ignore[no-untyped-def]
        while (item := await queue.get()) is not None:
            yield item

    call = sb.chat.Converse(requests(), metadata=auth())
    await queue.put(chat_pb2.ConverseRequest(
        start_turn=chat_pb2.TurnInput(message="first", agent="scripted")))
    texts, conversation = [], ""
    async for reply in call:
        event = reply.event
        if event.HasField("turn_started"):
            conversation = event.conversation_id
        if event.HasField("completed"):
            texts.append(event.completed.text)
            if len(texts) == 1:
                await queue.put(chat_pb2.ConverseRequest(start_turn=chat_pb2.TurnInput(
                    message="second", conversation_id=conversation)))
            else:
                await queue.put(None)
    assert texts == ["echo first", "echo second"]


async def test_client_cancel_stops_generation_and_stores_partial(sb: Harness) -> None:
    await sb.scripted_agent(reply=" ".join(f"w{i}" for i in range(200)), delay_ms=20)
    call = sb.chat.StreamChat(
        chat_pb2.StreamChatRequest(turn=chat_pb2.TurnInput(message="go", agent="scripted")),
        metadata=auth(),
    )
    conversation, seen = "", 0
    async for reply in call:
        if reply.event.HasField("turn_started"):
            conversation = reply.event.conversation_id
        if reply.event.HasField("text_delta"):
            seen += 1
            if seen == 5:
                break
    call.cancel()
    live = sb.core.engine.live.get(conversation)
    if live is not None:
        await asyncio.wait_for(live.finished.wait(), timeout=0.5)
    listed = await sb.chat.ListMessages(
        chat_pb2.ListMessagesRequest(conversation_id=conversation), metadata=auth()
    )
    assistant = [m for m in listed.messages if m.role == "assistant"]
    assert len(assistant) == 1
    assert assistant[0].status == events_pb2.TURN_STATUS_CANCELLED
    words = assistant[0].content.split()
    assert 5 <= len(words) < 200


async def test_deadline_exceeded(sb: Harness) -> None:
    await sb.scripted_agent(reply="slow " * 50, delay_ms=50)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sb.chat.Chat(
            chat_pb2.ChatRequest(turn=chat_pb2.TurnInput(message="x", agent="scripted")),
            metadata=auth(), timeout=0.3,
        )
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.parametrize("metadata", [[], [("authorization", "Bearer nope")],
                                      [("authorization", "Basic abc")]])
async def test_bad_key_is_unauthenticated(sb: Harness, metadata: list[tuple[str, str]]) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sb.chat.Chat(chat_pb2.ChatRequest(turn=chat_pb2.TurnInput(message="x")),
                           metadata=metadata)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_unknown_agent_is_not_found(sb: Harness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sb.chat_once("x", agent="no-such-agent")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_message_length_boundary_in_code_points(sb: Harness) -> None:
    await sb.scripted_agent(reply="ok")
    at_limit = "é" * limits.MAX_MESSAGE_CHARS  # 2 bytes each in UTF-8: counted as characters
    reply = await sb.chat_once(at_limit, agent="scripted")
    assert reply.completed.text == "ok"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sb.chat_once(at_limit + "é", agent="scripted")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_widget_key_works_for_chat(sb: Harness) -> None:
    await sb.scripted_agent(reply="ok")
    reply = await sb.chat_once("x", agent="scripted", key=WIDGET)
    assert reply.completed.text == "ok"


async def test_conversation_of_another_org_is_not_found(sb: Harness) -> None:
    await sb.scripted_agent(reply="ok")
    reply = await sb.chat_once("x", agent="scripted")
    from core.domain import Organisation, OrgSettings

    other = Organisation("other-org", "other", "Other", OrgSettings(), sb.core.clock.now())
    await sb.core.store.create_org(other)
    _, raw = await sb.core.auth.create_key(other.id, "secret", sb.core.ids)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sb.chat.GetConversation(
            chat_pb2.GetConversationRequest(conversation_id=reply.conversation_id),
            metadata=auth(raw),
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_company_id_length_boundary(sb: Harness) -> None:
    await sb.scripted_agent(reply="ok")
    ok = await sb.chat_once("x", agent="scripted", user_id="u1",
                            company_id="c" * limits.MAX_COMPANY_ID_CHARS)
    assert ok.completed.text == "ok"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sb.chat_once(
            "x", agent="scripted", company_id="c" * (limits.MAX_COMPANY_ID_CHARS + 1)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_model_sees_the_latest_messages_oldest_first(sb: Harness) -> None:
    await sb.scripted_agent(reply="echo {message}")
    first = await sb.chat_once("one", agent="scripted")
    for text in ("two", "three"):
        await sb.chat_once(text, conversation_id=first.conversation_id)
    recent = await sb.core.store.recent_messages(sb.org_id, first.conversation_id, 3)
    assert [(m.role, m.content) for m in recent] == [
        ("assistant", "echo two"), ("user", "three"), ("assistant", "echo three")
    ]
