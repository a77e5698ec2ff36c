"""Human handoff end to end over real sockets: livehelp puts the conversation in the
queue, an operator claims it and replies, the reply reaches the visitor's listen stream
and the transcript, the visitor's answer reaches the operator's event stream with no
model call, and after release the bot answers again. Also the double-claim race, who may
use which route, and bad input."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import pytest
from halo_client import post, token
from handoff_client import LISTEN, OPERATOR, counting_model, model_agent, op, sse

from core import limits
from core.domain import KeyKind, Organisation, OrgSettings
from harness import SECRET, WIDGET, Harness


async def operator_token(sb: Harness, name: str, org_id: str = "") -> str:
    _, raw = await sb.core.auth.create_key(org_id or sb.org_id, KeyKind.OPERATOR,
                                           sb.core.ids, name=name)
    return raw


async def start_livehelp(sb: Harness, agent: str = "helper", **extra: Any) -> dict[str, Any]:
    status, body = await post(sb, {"message": "I need a person", "mode": "livehelp",
                                   "agent_id": agent, **extra})
    assert status == 200, body
    return dict(body)


async def history(sb: Harness, session: str, **query: str) -> list[dict[str, Any]]:
    async with sb.http.get("/api/sdk/chat/history", params={"session_id": session, **query},
                           headers={"Authorization": f"Bearer {WIDGET}"}) as resp:
        assert resp.status == 200
        return list((await resp.json())["messages"])


async def test_the_whole_loop_livehelp_claim_reply_listen_release(sb: Harness) -> None:
    ann = await operator_token(sb, "Ann")
    async with counting_model("The bot answers.") as model:
        await model_agent(sb, model)
        async with sse(sb, OPERATOR + "/events", ann) as operator_events:
            first = await start_livehelp(sb)
            session = first["session_id"]
            assert first["routing"]["action"] == "route_to_team" and not model.calls
            queued = await operator_events.until(lambda e: e.event == "state")
            assert queued.data["state"] == "waiting" and queued.data["session_id"] == session

            status, queue = await op(sb, "GET", "/conversations?state=waiting", ann)
            assert status == 200
            assert [c["session_id"] for c in queue["conversations"]] == [session]
            assert queue["conversations"][0]["team"] == "support"

            async with sse(sb, LISTEN, WIDGET, params={"session_id": session}) as visitor:
                status, claimed = await op(sb, "POST", f"/conversations/{session}/claim", ann)
                assert status == 200 and claimed["state"] == "human"
                assert claimed["operator"]["name"] == "Ann"
                state = await visitor.until(lambda e: e.event == "state")
                assert state.data["state"] == "human"

                status, sent = await op(sb, "POST", f"/conversations/{session}/messages", ann,
                                        {"text": "Hi, Ann here. How can I help?"})
                assert status == 201 and sent["role"] == "operator"
                said = await visitor.until(lambda e: e.event == "message")
                assert (said.data["role"], said.data["text"]) == (
                    "operator", "Hi, Ann here. How can I help?")
                assert said.data["operator"]["name"] == "Ann" and int(said.id) > int(state.id)

                # The visitor answers: stored, delivered to the operator, no model call.
                status, reply = await post(sb, {"message": "My invoice is wrong",
                                                "session_id": session, "agent_id": "helper"})
                assert status == 200 and reply["routing"]["ticket_id"] == (
                    first["routing"]["ticket_id"])
                assert reply["text"] == ""  # a person has it: no generated reply
                heard = await operator_events.until(
                    lambda e: e.event == "message" and e.data["role"] == "user")
                assert heard.data["text"] == "My invoice is wrong"
                assert model.calls == []

                words = [(m["role"], m["text"]) for m in await history(sb, session)]
                assert ("operator", "Hi, Ann here. How can I help?") in words
                assert words[-1] == ("user", "My invoice is wrong")
                named = [m for m in await history(sb, session) if m["role"] == "operator"]
                assert named[0]["operator_name"] == "Ann"

                status, released = await op(sb, "POST", f"/conversations/{session}/release",
                                            ann)
                assert status == 200 and released["state"] == "bot"
                back = await visitor.until(lambda e: e.event == "state")
                assert back.data["state"] == "bot"

                status, again = await post(sb, {"message": "Thanks, one more question",
                                                "session_id": session, "agent_id": "helper"})
                assert status == 200 and again["text"] == "The bot answers."
                assert "routing" not in again and len(model.calls) == 1
                # The bot's reply is on the visitor's stream too.
                bot = await visitor.until(
                    lambda e: e.event == "message" and e.data["role"] == "assistant")
                assert bot.data["text"] == "The bot answers."
                # The bot knows what the person said: the operator's words are the
                # assistant's side of the conversation for the model.
                sent_to_model = [(m["role"], m["content"]) for m in model.calls[0]["messages"]]
                assert ("assistant", "Hi, Ann here. How can I help?") in sent_to_model
                assert ("user", "My invoice is wrong") in sent_to_model


async def test_last_event_id_resumes_the_listen_stream(sb: Harness) -> None:
    await sb.scripted_agent("helper", reply="bot words")
    session = (await start_livehelp(sb))["session_id"]
    await op(sb, "POST", f"/conversations/{session}/claim", SECRET,
             {"operator_name": "Root"})
    async with sse(sb, LISTEN, WIDGET, params={"session_id": session}) as visitor:
        for text in ("one", "two", "three"):
            await op(sb, "POST", f"/conversations/{session}/messages", SECRET,
                     {"text": text, "operator_name": "Root"})
        seen = [await visitor.next() for _ in range(3)]
    assert [e.data["text"] for e in seen] == ["one", "two", "three"]
    async with sse(sb, LISTEN, WIDGET, params={"session_id": session},
                   headers={"Last-Event-ID": seen[0].id}) as resumed:
        replay = [await resumed.next() for _ in range(2)]
    assert [e.data["text"] for e in replay] == ["two", "three"]
    assert [e.id for e in replay] == [seen[1].id, seen[2].id]
    # From the very beginning: the request for a person, the claim, then the messages.
    async with sse(sb, LISTEN, WIDGET, params={"session_id": session, "lastEventId": "0"}
                   ) as everything:
        kinds = [(await everything.next()).event for _ in range(4)]
    assert kinds[0] == "state" and "message" in kinds


async def test_operator_events_resume_after_last_event_id(sb: Harness) -> None:
    await sb.scripted_agent("helper", reply="x")
    async with sse(sb, OPERATOR + "/events", SECRET) as events:
        session = (await start_livehelp(sb))["session_id"]
        first = await events.next()
    await op(sb, "POST", f"/conversations/{session}/claim", SECRET)
    async with sse(sb, OPERATOR + "/events", SECRET,
                   headers={"Last-Event-ID": first.id}) as resumed:
        later = await resumed.until(lambda e: e.event == "state")
    assert later.data["state"] == "human" and int(later.id) > int(first.id)


async def test_many_concurrent_claims_exactly_one_wins(sb: Harness) -> None:
    await sb.scripted_agent("helper", reply="x")
    session = (await start_livehelp(sb))["session_id"]
    tokens = [await operator_token(sb, f"Op {i}") for i in range(10)]
    results = await asyncio.gather(*(op(sb, "POST", f"/conversations/{session}/claim", t)
                                     for t in tokens))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [409] * 9
    losers = [body for status, body in results if status == 409]
    assert all(b["error"]["code"] == "handoff_claimed" for b in losers)


async def test_who_may_use_which_route(sb: Harness) -> None:
    await sb.scripted_agent("helper", reply="x")
    session = (await start_livehelp(sb))["session_id"]
    # A widget key cannot use the operator routes.
    for method, path in (("GET", "/conversations"), ("POST", f"/conversations/{session}/claim"),
                         ("GET", "/events")):
        status, body = await op(sb, method, path, WIDGET)
        assert status == 403 and body["error"]["code"] == "forbidden", (path, body)
    status, _ = await op(sb, "GET", "/conversations", "sk_live_not_a_key")
    assert status == 401
    # An operator token cannot chat as a visitor.
    ann = await operator_token(sb, "Ann")
    status, body = await post(sb, {"message": "hi"}, key=ann)
    assert status == 403
    # Another organisation's operator sees nothing and claims nothing.
    other = Organisation("org-other", "other", "Other", OrgSettings(), sb.core.clock.now())
    await sb.core.store.create_org(other)
    stranger = await operator_token(sb, "Eve", org_id=other.id)
    status, queue = await op(sb, "GET", "/conversations", stranger)
    assert status == 200 and queue["conversations"] == []
    status, body = await op(sb, "POST", f"/conversations/{session}/claim", stranger)
    assert status == 404
    status, _ = await op(sb, "GET", f"/conversations/{session}", stranger)
    assert status == 404


async def test_a_visitor_cannot_listen_to_another_visitors_conversation(sb: Harness) -> None:
    await sb.scripted_agent("helper", reply="x")
    alice = (await start_livehelp(sb, user_id="alice", user_token=token("alice")))["session_id"]
    async with sb.http.get(LISTEN, params={"session_id": alice, "user_id": "mallory",
                                           "user_token": token("mallory")},
                           headers={"Authorization": f"Bearer {WIDGET}"}) as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "session_not_found"
    async with sb.http.get(LISTEN, params={"session_id": alice},
                           headers={"Authorization": f"Bearer {WIDGET}"}) as resp:
        assert resp.status == 404  # anonymous: not alice either
    async with sse(sb, LISTEN, WIDGET, params={"session_id": alice, "user_id": "alice",
                                               "user_token": token("alice")}):
        pass
    async with sb.http.get(LISTEN, headers={"Authorization": f"Bearer {WIDGET}"}) as resp:
        assert resp.status == 400
    # The browser Origin is checked as on every route of a widget key.
    org = await sb.core.store.get_org(sb.org_id)
    assert org is not None
    await sb.core.store.update_org_settings(
        sb.org_id, replace(org.settings, allowed_origins=("https://shop.example",)))
    async with sb.http.get(LISTEN, params={"session_id": alice, "user_id": "alice",
                                           "user_token": token("alice")},
                           headers={"Authorization": f"Bearer {WIDGET}",
                                    "Origin": "https://evil.example"}) as resp:
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "origin_not_allowed"
    async with sb.http.get(LISTEN, params={"session_id": "chat_unknown"},
                           headers={"Authorization": f"Bearer {WIDGET}"}) as resp:
        assert resp.status == 404


async def test_operator_text_limits_and_bad_input(sb: Harness) -> None:
    await sb.scripted_agent("helper", reply="x")
    session = (await start_livehelp(sb))["session_id"]
    await op(sb, "POST", f"/conversations/{session}/claim", SECRET)
    path = f"/conversations/{session}/messages"
    limit = limits.MAX_OPERATOR_MESSAGE_CHARS
    status, _ = await op(sb, "POST", path, SECRET, {"text": "é" * limit})
    assert status == 201
    status, body = await op(sb, "POST", path, SECRET, {"text": "é" * (limit + 1)})
    assert status == 400 and body["error"]["code"] == "message_too_long"
    for bad in ({"text": ""}, {"text": "   "}, {}, {"text": 3}):
        status, body = await op(sb, "POST", path, SECRET, bad)
        assert status == 400 and body["error"]["code"] == "message_required", bad
    status, body = await op(sb, "POST", "/conversations/chat_0000/claim", SECRET)
    assert status == 404
    status, body = await op(sb, "GET", "/conversations?state=sleeping", SECRET)
    assert status == 400 and body["error"]["field"] == "state"


async def test_claiming_a_conversation_the_bot_has_is_refused(sb: Harness) -> None:
    await sb.scripted_agent("helper", reply="hello")
    status, body = await post(sb, {"message": "hi", "agent_id": "helper"})
    session = body["session_id"]
    status, refused = await op(sb, "POST", f"/conversations/{session}/claim", SECRET)
    assert status == 400 and refused["error"]["code"] == "handoff_state"
    assert refused["error"]["state"] == "bot"
    # The API can request the handoff; then a claim works, a second request is refused.
    status, requested = await op(sb, "POST", f"/conversations/{session}/handoff", SECRET,
                                 {"team": "billing"})
    assert status == 200 and (requested["state"], requested["team"]) == ("waiting", "billing")
    status, _ = await op(sb, "POST", f"/conversations/{session}/handoff", SECRET)
    assert status == 400
    status, closed = await op(sb, "POST", f"/conversations/{session}/close", SECRET)
    assert status == 200 and closed["state"] == "closed"
    # Closed: the bot answers again.
    status, body = await post(sb, {"message": "still there?", "session_id": session,
                                   "agent_id": "helper"})
    assert status == 200 and body["text"] == "hello"


@pytest.mark.parametrize("length", [limits.MAX_OPERATOR_NAME_CHARS,
                                    limits.MAX_OPERATOR_NAME_CHARS + 1])
async def test_operator_name_limit(sb: Harness, length: int) -> None:
    await sb.scripted_agent("helper", reply="x")
    session = (await start_livehelp(sb))["session_id"]
    status, body = await op(sb, "POST", f"/conversations/{session}/claim", SECRET,
                            {"operator_name": "n" * length})
    if length <= limits.MAX_OPERATOR_NAME_CHARS:
        assert status == 200 and body["operator"]["name"] == "n" * length
    else:
        assert status == 400 and body["error"]["field"] == "operator_name"


async def test_server_side_dialects_answer_with_the_acknowledgement(sb: Harness) -> None:
    """slug and aibot while a person has the conversation: the acknowledgement while it
    waits, an empty reply once an operator has it; never the model."""
    await sb.scripted_agent("helper", reply="generated")
    secret = {"Authorization": f"Bearer {SECRET}"}
    async with sb.http.post("/v1/api/chat/helper", json={"message": "hi"},
                            headers=secret) as resp:
        conversation = (await resp.json())["data"]["conversationId"]
    status, waiting = await op(sb, "POST", f"/conversations/{conversation}/handoff", SECRET)
    assert status == 200 and waiting["state"] == "waiting"
    async with sb.http.post("/v1/api/chat/helper", headers=secret,
                            json={"message": "still there?",
                                  "conversationId": conversation}) as resp:
        held = (await resp.json())["data"]
    assert "support team" in held["response"] and "generated" not in held["response"]
    await op(sb, "POST", f"/conversations/{conversation}/claim", SECRET)
    async with sb.http.post("/v1/api/chat/helper", headers=secret,
                            json={"message": "hello?", "conversationId": conversation}) as resp:
        assert (await resp.json())["data"]["response"] == ""
    async with sb.http.post("/v1/aibot/bots/helper/send-message", headers=secret,
                            json={"messages": [{"role": "user", "content": "anyone?"}],
                                  "conversationId": conversation}) as resp:
        raw = (await resp.read()).decode()
    frames = [line.removeprefix("data: ") for line in raw.splitlines()
              if line.startswith("data: ")]
    assert resp.status == 200 and frames[-1] == "[DONE]"
    types = [json.loads(f).get("type") for f in frames[:-1]]
    assert "text" not in types and "error" not in types, frames
    status, detail = await op(sb, "GET", f"/conversations/{conversation}", SECRET)
    assert [m["text"] for m in detail["messages"] if m["role"] == "user"] == [
        "hi", "still there?", "hello?", "anyone?"]
    assert [m["text"] for m in detail["messages"] if m["role"] == "assistant"] == ["generated"]


@pytest.mark.parametrize("length", [limits.MAX_REFERENCE_CHARS, limits.MAX_REFERENCE_CHARS + 1])
async def test_requested_team_limit(sb: Harness, length: int) -> None:
    await sb.scripted_agent("helper", reply="x")
    _, body = await post(sb, {"message": "hi", "agent_id": "helper"})
    status, handoff = await op(sb, "POST", f"/conversations/{body['session_id']}/handoff",
                               SECRET, {"team": "t" * length})
    if length <= limits.MAX_REFERENCE_CHARS:
        assert status == 200 and handoff["team"] == "t" * length
    else:
        assert status == 400 and handoff["error"]["field"] == "team"


async def test_a_replay_longer_than_one_page_is_complete(sb: Harness) -> None:
    """`ACTIVITY_PAGE` rows are read at a time: a reconnect after more than a page of
    activity still gets every event, in order."""
    from core.domain import MessageRecord
    from core.handoffs import Operator

    await sb.scripted_agent("helper", reply="x")
    session = (await start_livehelp(sb))["session_id"]
    await op(sb, "POST", f"/conversations/{session}/claim", SECRET,
             {"operator_name": "Root"})
    canonical = session.removeprefix("chat_")
    root = Operator("secret:Root", "Root", admin=True)
    count = limits.ACTIVITY_PAGE + 1
    for i in range(count):
        await sb.core.store.add_operator_message(MessageRecord(
            id=f"m-{i}", conversation_id=canonical, org_id=sb.org_id, turn_id="",
            role="operator", content=f"line {i}", status="completed",
            created_at=sb.core.clock.now()), root, sb.core.clock.now())
    async with sse(sb, LISTEN, WIDGET, params={"session_id": session, "lastEventId": "0"}
                   ) as everything:
        texts = []
        while len(texts) < count:
            event = await everything.next()
            if event.event == "message" and event.data["role"] == "operator":
                texts.append(event.data["text"])
    assert texts == [f"line {i}" for i in range(count)]


async def test_listen_streams_per_conversation_are_capped(sb: Harness) -> None:
    await sb.scripted_agent("helper", reply="x")
    session = (await start_livehelp(sb))["session_id"]
    params = {"session_id": session}
    auth_header = {"Authorization": f"Bearer {WIDGET}"}
    cap = limits.MAX_LISTENERS_PER_CONVERSATION
    streams = [await sb.http.get(LISTEN, params=params, headers=auth_header)
               for _ in range(cap)]
    try:
        assert [r.status for r in streams] == [200] * cap
        async with sb.http.get(LISTEN, params=params, headers=auth_header) as refused:
            assert refused.status == 429
            assert refused.headers["Retry-After"] == "1"
        streams.pop().close()  # one leaves: its place is free once the server notices
        async with asyncio.timeout(10):
            while True:
                again = await sb.http.get(LISTEN, params=params, headers=auth_header)
                if again.status == 200:
                    streams.append(again)
                    break
                again.close()
                await asyncio.sleep(0.2)
    finally:
        for r in streams:
            r.close()
