"""Every Halo request field with its rule, at its boundaries (over real sockets)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from halo_client import CHAT, headers, messages, post, stream, token

from core import limits
from core.domain import Organisation, OrgSettings
from harness import SECRET, Harness
from switchboard.v1 import chat_pb2


@pytest.fixture
async def echo(sb: Harness) -> Harness:
    await sb.scripted_agent(reply="echo {message}")
    return sb


def body(**fields: Any) -> dict[str, Any]:
    return {"message": "hi", "agent_id": "scripted", **fields}


async def conversation(sb: Harness, session_id: str) -> chat_pb2.Conversation:
    reply = await sb.chat.GetConversation(
        chat_pb2.GetConversationRequest(conversation_id=session_id),
        metadata=[("authorization", f"Bearer {SECRET}")],
    )
    return reply.conversation


# -- authentication ---------------------------------------------------------------------

@pytest.mark.parametrize("auth_header", [None, "Bearer", "Basic abc", "Bearer nope",
                                         "Bearer sk_live_unknown"])
async def test_missing_malformed_or_unknown_key_is_401(
    echo: Harness, auth_header: str | None
) -> None:
    extra = {"Authorization": auth_header} if auth_header else {}
    async with echo.http.post(CHAT, json=body(), headers=extra) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "unauthorized"


# -- message ----------------------------------------------------------------------------

async def test_message_length_boundary(echo: Harness) -> None:
    at_limit = "é" * limits.MAX_MESSAGE_CHARS
    status, reply = await post(echo, body(message=at_limit))
    assert status == 200 and reply["text"] == "echo " + at_limit
    status, reply = await post(echo, body(message=at_limit + "é"))
    assert status == 400
    assert reply["error"] == {
        "code": "message_too_long", "message": "message must be at most 10,000 characters.",
        "field": "message",
    }


@pytest.mark.parametrize("message", [None, "", "   "])
async def test_message_is_required(echo: Harness, message: str | None) -> None:
    payload = body(message=message) if message is not None else {"agent_id": "scripted"}
    status, reply = await post(echo, payload)
    assert status == 400 and reply["error"]["code"] == "message_required"


@pytest.mark.parametrize("field,value", [
    ("message", 5), ("user_id", 12), ("session_id", []), ("mode", True), ("images", "x"),
    ("images", [1]), ("custom_fields", []), ("context", "x"), ("context", {"a": 1}),
    ("context", {"a": {"label": "A"}}), ("conversation_history", {}),
    ("conversation_history", [{"speaker": "user"}]), ("behavior_context", {}),
])
async def test_wrong_json_types_are_400(echo: Harness, field: str, value: Any) -> None:
    status, reply = await post(echo, body(**{field: value}))
    assert status == 400, reply
    assert reply["error"]["code"] == "invalid_request"
    assert reply["error"]["field"].startswith(field)


@pytest.mark.parametrize("raw", [b"{nope", b"", b"[1, 2]", b'"text"', b"\xff\xfe"])
async def test_malformed_json_is_400_with_the_envelope(echo: Harness, raw: bytes) -> None:
    for path in (CHAT, "/api/sdk/chat/stream"):
        async with echo.http.post(path, data=raw, headers=headers()) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["code"] == "invalid_request"


async def test_body_over_the_size_limit_is_413(echo: Harness) -> None:
    from shim.app import create_app

    max_size = create_app("127.0.0.1:1", dialects=[])._client_max_size
    oversized = io.BytesIO(b" " * (max_size + 1))
    async with echo.http.post(CHAT, data=oversized, headers=headers()) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == "payload_too_large"


async def test_unknown_fields_and_nulls_are_ignored(echo: Harness) -> None:
    status, reply = await post(echo, body(future_field={"x": 1}, user_id=None, mode=None))
    assert status == 200 and reply["text"] == "echo hi"


# -- user_id, session_id ----------------------------------------------------------------

async def test_user_id_defaults_to_anonymous(echo: Harness) -> None:
    _, reply = await post(echo, body())
    assert (await conversation(echo, reply["session_id"])).user_id == "anonymous"
    _, reply = await post(echo, body(user_id="u-42"))
    assert (await conversation(echo, reply["session_id"])).user_id == "u-42"


async def test_user_id_length_boundary(echo: Harness) -> None:
    status, _ = await post(echo, body(user_id="u" * limits.MAX_USER_ID_CHARS))
    assert status == 200
    status, reply = await post(echo, body(user_id="u" * (limits.MAX_USER_ID_CHARS + 1)))
    assert status == 400 and reply["error"]["code"] == "field_too_long"


@pytest.mark.parametrize("session", ["chat_00000000-0000-4000-8000-000000000000", "garbage"])
async def test_unknown_session_is_404(echo: Harness, session: str) -> None:
    status, reply = await post(echo, body(session_id=session))
    assert status == 404 and reply["error"]["code"] == "session_not_found"


async def test_session_of_another_organisation_is_not_found(echo: Harness) -> None:
    _, mine = await post(echo, body())
    other = Organisation("org-2", "other", "Other", OrgSettings(), echo.core.clock.now())
    await echo.core.store.create_org(other)
    _, raw_key = await echo.core.auth.create_key(other.id, "secret", echo.core.ids)
    await echo.apply_agent({"name": "x", "slug": "x", "active": True,
                            "provider": {"kind": "scripted"}})
    status, reply = await post(echo, {"message": "hi", "session_id": mine["session_id"]},
                               key=raw_key)
    assert status == 404 and reply["error"]["code"] == "session_not_found"


# -- mode, agent_id ---------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["chat", "voice", "video"])
async def test_valid_modes(echo: Harness, mode: str) -> None:
    status, reply = await post(echo, body(mode=mode))
    assert status == 200 and reply["text"] == "echo hi"


@pytest.mark.parametrize("mode", ["sms", "CHAT", "livehelp "])
async def test_other_modes_are_400(echo: Harness, mode: str) -> None:
    status, reply = await post(echo, body(mode=mode))
    assert status == 400 and reply["error"]["code"] == "invalid_mode"


async def test_agent_id_pins_and_unknown_is_404(echo: Harness) -> None:
    status, reply = await post(echo, body(agent_id="no-such-agent"))
    assert status == 404 and reply["error"]["code"] == "agent_not_found"
    support = await echo.core.agents.get(echo.org_id, "support-agent")
    sales = await echo.core.agents.get(echo.org_id, "sales-bot")
    assert support is not None and sales is not None
    _, reply = await post(echo, {"message": "What plans do you have?"})
    assert reply["agent_id"] == support.id  # the organisation's active agent
    _, reply = await post(echo, {"message": "What plans do you have?", "agent_id": sales.id})
    assert reply["agent_id"] == sales.id  # by id
    _, again = await post(echo, {"message": "And pricing?", "session_id": reply["session_id"]})
    assert again["agent_id"] == sales.id  # the session stays pinned


# -- images -----------------------------------------------------------------------------

async def test_images_count_boundary_and_storage(echo: Harness) -> None:
    images = [f"https://img.example/{i}.png" for i in range(limits.MAX_IMAGES)]
    status, reply = await post(echo, body(images=images))
    assert status == 200
    user = [m for m in await messages(echo, reply["session_id"]) if m.role == "user"]
    assert list(user[0].images) == images
    status, reply = await post(echo, body(images=[*images, "https://img.example/x.png"]))
    assert status == 400 and reply["error"]["code"] == "invalid_images"


async def test_image_size_boundary_and_data_urls(echo: Harness) -> None:
    prefix = "data:image/png;base64,"
    at_limit = prefix + "A" * (limits.MAX_IMAGE_URL_BYTES - len(prefix))
    status, reply = await post(echo, body(images=[at_limit]))
    assert status == 200
    # Read from the store: the test's own gRPC channel keeps the 4 MiB default limit.
    stored, _ = await echo.core.store.list_messages(
        echo.org_id, reply["session_id"].removeprefix("chat_"), 10
    )
    assert [m.images for m in stored if m.role == "user"] == [(at_limit,)]
    status, reply = await post(echo, body(images=[at_limit + "A"]))
    assert status == 400 and reply["error"]["code"] == "invalid_images"
    status, reply = await post(echo, body(images=["ftp://x/y.png"]))
    assert status == 400 and reply["error"]["code"] == "invalid_images"


# -- custom_fields, context, company_id -------------------------------------------------

async def test_custom_fields_merge_with_stored_traits_and_persist(echo: Harness) -> None:
    # Stored profiles belong to verified users (an unverified user_id is only a claim).
    await post(echo, body(user_id="u1", user_token=token("u1"),
                          custom_fields={"plan": "free", "seats": 3}))
    await post(echo, body(user_id="u1", user_token=token("u1"), custom_fields={"plan": "pro"}))
    user = await echo.core.store.get_end_user(echo.org_id, "u1")
    assert user is not None and user.traits == {"plan": "pro", "seats": 3}


async def test_custom_fields_size_boundary(echo: Harness) -> None:
    many = {f"k{i}": i for i in range(limits.MAX_CUSTOM_FIELDS)}
    assert (await post(echo, body(custom_fields=many)))[0] == 200
    status, reply = await post(echo, body(custom_fields={**many, "one_more": 1}))
    assert status == 400 and reply["error"]["code"] == "field_too_long"


async def test_context_merges_with_stored_context_request_wins(echo: Harness) -> None:
    first = {"plan": {"label": "Plan", "type": "billing", "value": "free"},
             "page": {"label": "Page", "value": "/home"}}
    await post(echo, body(user_id="u2", user_token=token("u2"), context=first))
    await post(echo, body(user_id="u2", user_token=token("u2"),
                          context={"plan": {"label": "Plan", "value": "pro"}}))
    user = await echo.core.store.get_end_user(echo.org_id, "u2")
    assert user is not None
    assert user.context["plan"]["value"] == "pro"
    assert user.context["page"] == {"label": "Page", "type": "", "value": "/home"}


async def test_null_context_label_and_type_mean_absent(echo: Harness) -> None:
    context = {"plan": {"label": None, "type": None, "value": "pro"}}
    status, reply = await post(echo, body(user_id="u5", user_token=token("u5"), context=context))
    assert status == 200, reply
    user = await echo.core.store.get_end_user(echo.org_id, "u5")
    assert user is not None
    assert user.context["plan"] == {"label": "plan", "type": "", "value": "pro"}


@pytest.mark.parametrize("entry", [{"label": 5, "value": 1}, {"type": False, "value": 1}])
async def test_context_label_and_type_must_be_strings(echo: Harness,
                                                      entry: dict[str, Any]) -> None:
    status, reply = await post(echo, body(context={"plan": entry}))
    assert status == 400 and reply["error"]["field"] == "context.plan"


async def test_anonymous_context_carries_over_within_the_session(echo: Harness) -> None:
    _, reply = await post(echo, body(context={"a": {"label": "A", "value": 1}}))
    session = reply["session_id"]
    await post(echo, body(session_id=session, context={"b": {"label": "B", "value": 2}}))
    stored = await echo.core.store.get_conversation(
        echo.org_id, session.removeprefix("chat_")
    )
    assert stored is not None and set(stored.context) == {"a", "b"}


async def test_context_entry_count_boundary(echo: Harness) -> None:
    entries = {f"e{i}": {"label": "L", "value": i} for i in range(limits.MAX_CONTEXT_ENTRIES)}
    assert (await post(echo, body(context=entries)))[0] == 200
    entries["one_more"] = {"label": "L", "value": 0}
    status, reply = await post(echo, body(context=entries))
    assert status == 400 and reply["error"]["code"] == "field_too_long"


async def test_company_id_links_the_user_when_not_yet_linked(echo: Harness) -> None:
    store = echo.core.store
    await store.upsert_company(echo.org_id, "acme", "Acme Inc", {"tier": "gold"})
    await store.upsert_company(echo.org_id, "globex", "Globex", {})
    await post(echo, body(user_id="u3", user_token=token("u3"), company_id="unknown-co"))
    user = await store.get_end_user(echo.org_id, "u3")
    assert user is not None and user.company_id == ""  # unknown companies are ignored
    await post(echo, body(user_id="u3", user_token=token("u3"), company_id="acme"))
    user = await store.get_end_user(echo.org_id, "u3")
    assert user is not None and user.company_id == "acme"
    assert "company" not in user.traits  # looked up each turn, never copied
    await post(echo, body(user_id="u3", user_token=token("u3"), company_id="globex"))
    user = await store.get_end_user(echo.org_id, "u3")
    assert user is not None and user.company_id == "acme"  # already linked


async def test_trusted_company_claim_relinks(echo: Harness) -> None:
    store = echo.core.store
    await store.upsert_company(echo.org_id, "acme", "Acme Inc", {})
    await post(echo, body(user_id="u4", company_id="acme"))
    await post(echo, body(user_id="u4", user_token=token("u4", company_id="initech")))
    user = await store.get_end_user(echo.org_id, "u4")
    assert user is not None and user.company_id == "initech"


# -- conversation_history, behavior_context ---------------------------------------------

async def test_conversation_history_seeds_a_new_session_only(echo: Harness) -> None:
    history = [
        {"speaker": "user", "text": "My export fails"},
        {"role": "agent", "content": "Which format?"},
        {"speaker": "customer", "content": "CSV"},
    ]
    _, reply = await post(echo, body(message="still failing", conversation_history=history))
    transcript = [(m.role, m.content) for m in await messages(echo, reply["session_id"])]
    assert transcript == [
        ("user", "My export fails"), ("assistant", "Which format?"), ("user", "CSV"),
        ("user", "still failing"), ("assistant", "echo still failing"),
    ]
    await post(echo, body(message="next", session_id=reply["session_id"],
                          conversation_history=[{"speaker": "user", "text": "ignored"}]))
    later = [m.content for m in await messages(echo, reply["session_id"])]
    assert "ignored" not in later


async def test_null_history_text_or_speaker_falls_back_on_content_or_role(
        echo: Harness) -> None:
    history = [{"speaker": "user", "text": None, "content": "My export fails"},
               {"speaker": None, "role": "agent", "content": "Which format?"}]
    status, reply = await post(echo, body(message="CSV", conversation_history=history))
    assert status == 200, reply
    transcript = [(m.role, m.content) for m in await messages(echo, reply["session_id"])]
    assert transcript[:3] == [("user", "My export fails"), ("assistant", "Which format?"),
                              ("user", "CSV")]


async def test_conversation_history_count_boundary(echo: Harness) -> None:
    items = [{"speaker": "user", "text": "x"}] * limits.MAX_HISTORY_ITEMS
    assert (await post(echo, body(conversation_history=items)))[0] == 200
    status, reply = await post(echo, body(conversation_history=[*items, items[0]]))
    assert status == 400 and reply["error"]["code"] == "field_too_long"


async def test_behavior_context_length_boundary(echo: Harness) -> None:
    at_limit = "b" * limits.MAX_BEHAVIOR_CONTEXT_CHARS
    assert (await post(echo, body(behavior_context=at_limit)))[0] == 200
    status, reply = await post(echo, body(behavior_context=at_limit + "b"))
    assert status == 400
    assert reply["error"]["code"] == "field_too_long"
    assert reply["error"]["field"] == "behavior_context"


async def test_stream_enforces_the_same_rules(echo: Harness) -> None:
    status, _, raw = await stream(echo, body(mode="sms"))
    assert status == 400 and '"invalid_mode"' in raw
