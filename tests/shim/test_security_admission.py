"""A visitor holding the widget key cannot read, continue or alter a conversation or a
profile that is not theirs (issue #11): unverified user ids are claims, conversations
belong to who started them, and reads pass the same admission as sends."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from halo_client import post, token

from harness import SECRET, WIDGET, Harness, auth
from switchboard.v1 import chat_pb2

SECRET_FACT = "alice-private-fact-4711"
OTHER_ORIGIN = "https://evil.example"


@pytest.fixture
async def sb_ctx(sb: Harness) -> Harness:
    await sb.scripted_agent(reply="ctx={context} traits={traits}")
    return sb


def turn(user_id: str = "alice", **fields: Any) -> dict[str, Any]:
    return {"message": "hi", "agent_id": "scripted", "user_id": user_id, **fields}


async def alice_session(sb: Harness) -> str:
    status, reply = await post(sb, turn(
        user_token=token("alice"), custom_fields={"plan": "gold"},
        context={"fact": {"label": "Fact", "type": "note", "value": SECRET_FACT}},
    ))
    assert status == 200, reply
    assert SECRET_FACT in reply["text"]
    session: str = reply["session_id"]
    return session


async def test_unverified_user_id_does_not_load_or_overwrite_the_profile(
    sb_ctx: Harness,
) -> None:
    await alice_session(sb_ctx)
    status, reply = await post(sb_ctx, turn(custom_fields={"plan": "hacked"}))
    assert status == 200, reply
    assert SECRET_FACT not in reply["text"]
    assert "gold" not in reply["text"]
    user = await sb_ctx.core.store.get_end_user(sb_ctx.org_id, "alice")
    assert user is not None
    assert user.traits["plan"] == "gold"
    assert SECRET_FACT in str(user.context)


async def test_unverified_company_id_links_nothing(sb_ctx: Harness) -> None:
    await sb_ctx.core.store.upsert_company(sb_ctx.org_id, "acme", "Acme", {"tier": "vip-9"})
    status, reply = await post(sb_ctx, turn("mallory", company_id="acme"))
    assert status == 200, reply
    assert "vip-9" not in reply["text"]
    assert await sb_ctx.core.store.get_end_user(sb_ctx.org_id, "mallory") is None
    # A verified user does get the link.
    status, reply = await post(sb_ctx, turn("bob", user_token=token("bob"), company_id="acme"))
    assert status == 200, reply
    assert "vip-9" in reply["text"]


async def test_secret_key_callers_are_trusted_with_user_ids(sb_ctx: Harness) -> None:
    await alice_session(sb_ctx)
    status, reply = await post(sb_ctx, turn(), key=SECRET)
    assert status == 200, reply
    assert SECRET_FACT in reply["text"]


@pytest.mark.parametrize("who", [
    pytest.param({"user_id": "alice"}, id="unverified-claiming-alice"),
    pytest.param({"user_id": "bob"}, id="unverified-other"),
    pytest.param({"user_id": "bob", "user_token": "bob"}, id="verified-other"),
    pytest.param({}, id="anonymous"),
])
async def test_a_verified_users_conversation_is_theirs_alone(
    sb_ctx: Harness, who: dict[str, str],
) -> None:
    session = await alice_session(sb_ctx)
    fields = dict(who)
    if "user_token" in fields:
        fields["user_token"] = token(fields["user_id"])
    status, reply = await post(sb_ctx, {"message": "hi", "agent_id": "scripted",
                                        "session_id": session, **fields})
    assert status == 404, reply
    assert SECRET_FACT not in str(reply)
    # Stop and resume are refused alike.
    headers = {"Authorization": f"Bearer {WIDGET}"}
    async with sb_ctx.http.post("/api/sdk/chat/stop", json={"session_id": session, **fields},
                                headers=headers) as resp:
        assert resp.status == 404
    async with sb_ctx.http.get("/api/sdk/chat/stream/resume",
                               params={"session_id": session, **fields},
                               headers=headers) as resp:
        assert resp.status == 404
        assert SECRET_FACT not in await resp.text()
    # Alice herself continues.
    status, reply = await post(sb_ctx, {"message": "again", "agent_id": "scripted",
                                        "session_id": session, "user_id": "alice",
                                        "user_token": token("alice")})
    assert status == 200, reply
    async with sb_ctx.http.get("/api/sdk/chat/stream/resume",
                               params={"session_id": session, "user_id": "alice",
                                       "user_token": token("alice")},
                               headers=headers) as resp:
        assert resp.status == 200


async def test_an_anonymous_conversation_needs_its_id_and_no_other_verified_user(
    sb_ctx: Harness,
) -> None:
    status, reply = await post(sb_ctx, {"message": "hi", "agent_id": "scripted"})
    assert status == 200
    session = reply["session_id"]
    status, _ = await post(sb_ctx, {"message": "more", "agent_id": "scripted",
                                    "session_id": session})
    assert status == 200
    status, _ = await post(sb_ctx, {"message": "take over", "agent_id": "scripted",
                                    "session_id": session, "user_id": "bob",
                                    "user_token": token("bob")})
    assert status == 404


async def _grpc_code(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    code: grpc.StatusCode = info.value.code()
    return code


async def test_transcript_reads_pass_admission(sb_ctx: Harness) -> None:
    session = await alice_session(sb_ctx)
    get = chat_pb2.GetConversationRequest
    listing = chat_pb2.ListMessagesRequest
    widget = auth(WIDGET)
    assert await _grpc_code(sb_ctx.chat.GetConversation(
        get(conversation_id=session), metadata=widget)) == grpc.StatusCode.NOT_FOUND
    assert await _grpc_code(sb_ctx.chat.ListMessages(
        listing(conversation_id=session, user_id="bob", user_token=token("bob")),
        metadata=widget)) == grpc.StatusCode.NOT_FOUND
    assert await _grpc_code(sb_ctx.chat.ListMessages(
        listing(conversation_id=session, origin=OTHER_ORIGIN, user_id="alice",
                user_token=token("alice")),
        metadata=widget)) == grpc.StatusCode.PERMISSION_DENIED
    mine = await sb_ctx.chat.ListMessages(
        listing(conversation_id=session, user_id="alice", user_token=token("alice")),
        metadata=widget)
    assert len(mine.messages) == 2
    owned = await sb_ctx.chat.GetConversation(get(conversation_id=session),
                                              metadata=auth(SECRET))
    assert owned.conversation.user_id == "alice"


async def test_a_secret_key_conversation_is_out_of_a_widget_keys_reach(
    sb_ctx: Harness,
) -> None:
    """A slug (secret-key) conversation: the widget key cannot read or continue it through
    gRPC, whatever `dialect` string it sends, nor through Halo."""
    started = await sb_ctx.chat_once("server-side secret", agent="scripted", dialect="slug")
    conv = started.conversation_id
    widget = auth(WIDGET)
    for dialect in ("", "grpc", "halo"):
        assert await _grpc_code(sb_ctx.chat.ListMessages(
            chat_pb2.ListMessagesRequest(conversation_id=conv), metadata=widget,
        )) == grpc.StatusCode.NOT_FOUND
        assert await _grpc_code(sb_ctx.chat.Chat(chat_pb2.ChatRequest(turn=chat_pb2.TurnInput(
            message="leak?", conversation_id=conv, dialect=dialect)), metadata=widget,
        )) == grpc.StatusCode.NOT_FOUND
    status, _ = await post(sb_ctx, {"message": "leak?", "session_id": conv})
    assert status == 404
    headers = {"Authorization": f"Bearer {WIDGET}"}
    async with sb_ctx.http.get("/v1/aibot/bots/scripted/stream",
                               params={"conversationId": conv, "lastEventId": "0"},
                               headers=headers) as resp:
        assert resp.status == 404
        assert "server-side secret" not in await resp.text()
    async with sb_ctx.http.get("/api/sdk/chat/stream/resume", params={"session_id": conv},
                               headers=headers) as resp:
        assert resp.status == 404
