"""`GET /api/sdk/chat/history` (issue #17): the widget reloads a conversation from the
server. The core's admission decides who may read it: the visitor who started it (a
verified user only with their token), from an allowed origin; everyone else gets the
same 404 as for an unknown session."""

from __future__ import annotations

from typing import Any

import pytest
from halo_client import headers, post, token

from core.limits import LIST_MESSAGES_MAX_PAGE
from harness import SECRET, WIDGET, Harness

HISTORY = "/api/sdk/chat/history"
ALLOWED = "http://localhost:3000"  # on the demo organisation's list
OTHER = "https://evil.example"


@pytest.fixture
async def echo(sb: Harness) -> Harness:
    await sb.scripted_agent(reply="you said: {message}")
    return sb


async def history(sb: Harness, key: str = WIDGET, **params: str) -> tuple[int, Any]:
    extra = {"Origin": params.pop("origin")} if "origin" in params else {}
    async with sb.http.get(HISTORY, params=params, headers=headers(key, **extra)) as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


async def converse(sb: Harness, *messages: str, **identity: str) -> str:
    session = ""
    for message in messages:
        body: dict[str, Any] = {"message": message, "agent_id": "scripted", **identity}
        if session:
            body["session_id"] = session
        status, reply = await post(sb, body)
        assert status == 200, reply
        session = reply["session_id"]
    return session


async def test_a_visitor_reads_their_own_conversation(echo: Harness) -> None:
    session = await converse(echo, "first", "second")
    status, body = await history(echo, session_id=session, origin=ALLOWED)
    assert status == 200, body
    assert body["session_id"] == session
    assert body["next_page_token"] is None
    assert [(m["role"], m["text"]) for m in body["messages"]] == [
        ("user", "first"), ("assistant", "you said: first"),
        ("user", "second"), ("assistant", "you said: second"),
    ]
    assert all(m["created_at"].endswith("Z") for m in body["messages"])


async def test_another_visitors_session_is_404_through_the_widget_key(echo: Harness) -> None:
    """An anonymous conversation: its id is the credential, but a verified user never
    reads one started under another user id; an unknown id is the same 404."""
    session = await converse(echo, "mine", user_id="carol")
    status, body = await history(echo, session_id=session, user_id="dave",
                                 user_token=token("dave"))
    assert status == 404, body
    assert body["error"]["code"] == "session_not_found"
    assert "mine" not in str(body)
    status, unknown = await history(echo, session_id="chat_00000000-0000-0000-0000-000000000000")
    assert status == 404
    assert unknown["error"]["code"] == body["error"]["code"]


@pytest.mark.parametrize("who", [
    pytest.param({"user_id": "bob", "token": "bob"}, id="another-verified-user"),
    pytest.param({"user_id": "alice"}, id="unverified-claim-of-alice"),
    pytest.param({}, id="anonymous"),
])
async def test_a_verified_users_conversation_is_theirs_alone(
    echo: Harness, who: dict[str, str],
) -> None:
    session = await converse(echo, "alice's secret", user_id="alice",
                             user_token=token("alice"))
    params = {k: v for k, v in who.items() if k != "token"}
    if "token" in who:
        params["user_token"] = token(who["token"])
    status, body = await history(echo, session_id=session, **params)
    assert status == 404, body
    assert "secret" not in str(body)
    status, body = await history(echo, session_id=session, user_id="alice",
                                 user_token=token("alice"))
    assert status == 200, body
    assert body["messages"][0]["text"] == "alice's secret"


async def test_a_secret_key_session_is_not_readable_with_the_widget_key(
    echo: Harness,
) -> None:
    started = await echo.chat_once("server-side secret", agent="scripted", dialect="slug")
    session = "chat_" + started.conversation_id
    status, body = await history(echo, session_id=session)
    assert status == 404, body
    assert "server-side secret" not in str(body)
    status, body = await history(echo, key=SECRET, session_id=session)
    assert status == 200, body
    assert body["messages"][0]["text"] == "server-side secret"


async def test_a_widget_key_from_another_origin_is_403(echo: Harness) -> None:
    session = await converse(echo, "hello")
    status, body = await history(echo, session_id=session, origin=OTHER)
    assert status == 403, body
    assert body["error"]["code"] == "origin_not_allowed"


async def test_pages_follow_each_other_without_gaps(echo: Harness) -> None:
    session = await converse(echo, "one", "two")  # four messages
    status, page = await history(echo, session_id=session, limit="4")
    assert status == 200
    assert len(page["messages"]) == 4
    assert page["next_page_token"] is None  # exactly one page: no empty second page
    status, first = await history(echo, session_id=session, limit="3")
    assert status == 200
    assert len(first["messages"]) == 3
    assert first["next_page_token"]
    status, rest = await history(echo, session_id=session, limit="3",
                                 page_token=first["next_page_token"])
    assert status == 200
    assert [m["text"] for m in first["messages"] + rest["messages"]] == [
        m["text"] for m in page["messages"]]
    assert rest["next_page_token"] is None


async def test_limit_boundary(echo: Harness) -> None:
    session = await converse(echo, "one")
    status, body = await history(echo, session_id=session, limit=str(LIST_MESSAGES_MAX_PAGE))
    assert status == 200, body
    assert len(body["messages"]) == 2
    status, body = await history(echo, session_id=session,
                                 limit=str(LIST_MESSAGES_MAX_PAGE + 1))
    assert status == 400, body
    assert body["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("params", [
    pytest.param({}, id="no-session"),
    pytest.param({"limit": "0"}, id="zero-limit"),
    pytest.param({"limit": "-1"}, id="negative-limit"),
    pytest.param({"limit": "ten"}, id="word-limit"),
    pytest.param({"page_token": "not-a-token"}, id="bad-page-token"),
])
async def test_bad_parameters_are_400_in_the_envelope(
    echo: Harness, params: dict[str, str],
) -> None:
    if params:
        params["session_id"] = await converse(echo, "x")
    status, body = await history(echo, **params)
    assert status == 400, body
    assert body["error"]["code"] == "invalid_request"
