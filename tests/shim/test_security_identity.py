"""Identity rules on every surface (issue #11): require_identity holds for flows, flow
session tokens are Origin-checked like their key, JWT time claims are numbers and a
token's lifetime is capped."""

from __future__ import annotations

import time
import warnings
from dataclasses import replace
from typing import Any

import jwt
import pytest
from halo_client import post, token
from jwt.warnings import InsecureKeyLengthWarning

from core.demo.seed import DEMO_IDENTITY_SECRET
from core.engine.identity import JWT_LEEWAY_S, MAX_TOKEN_LIFETIME_S
from harness import WIDGET, Harness

SESSIONS = "/api/public/v1/chat/sessions"
MESSAGES = "/api/public/v1/chat/messages"
ALLOWED = "http://localhost:3000"
OTHER = "https://evil.example"


def signed(claims: dict[str, Any]) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, DEMO_IDENTITY_SECRET, algorithm="HS256")


async def strict(sb: Harness) -> None:
    org = await sb.core.store.get_org(sb.org_id)
    assert org is not None
    await sb.core.store.update_org_settings(sb.org_id, replace(
        org.settings, require_identity=True, allow_anonymous=False))


async def session(sb: Harness, body: Any = None,
                  **headers: str) -> tuple[int, dict[str, Any]]:
    async with sb.http.post(SESSIONS, json=body or {}, headers={
            "Authorization": f"Bearer {WIDGET}", **headers}) as resp:
        data: dict[str, Any] = await resp.json()
        return resp.status, data


async def test_require_identity_holds_for_flow_sessions(sb: Harness) -> None:
    await strict(sb)
    status, body = await session(sb)
    assert status == 401, body
    status, body = await session(sb, {"userId": "bob"})
    assert status == 401, body
    status, body = await session(sb, {"userId": "bob", "userToken": token("bob")})
    assert status == 200, body
    conv = await sb.core.store.get_conversation(sb.org_id, body["conversationId"])
    assert conv is not None and conv.owner == "user:bob" and conv.user_id == "bob"


async def test_flow_session_tokens_are_origin_checked(sb: Harness) -> None:
    status, s = await session(sb, Origin=ALLOWED)
    assert status == 200, s
    msg = {"text": "I'd like to check my order", "intentName": "order_status"}
    async with sb.http.post(MESSAGES, json=msg, headers={
            "Authorization": f"Bearer {s['token']}", "Origin": OTHER}) as resp:
        assert resp.status == 403, await resp.text()
    async with sb.http.post(MESSAGES, json=msg, headers={
            "Authorization": f"Bearer {s['token']}", "Origin": ALLOWED}) as resp:
        assert resp.status == 200, await resp.text()


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
async def test_jwt_time_claims_must_be_numbers(sb: Harness, claim: str) -> None:
    await sb.scripted_agent(reply="ok")
    now = int(time.time())
    claims: dict[str, Any] = {"user_id": "u1", "exp": now + 300, "iat": now - 5,
                              "nbf": now - 5}
    claims[claim] = str(claims[claim])
    status, reply = await post(sb, {"message": "hi", "agent_id": "scripted",
                                    "user_id": "u1", "user_token": signed(claims)})
    assert status == 401, reply
    claims[claim] = int(claims[claim])
    status, reply = await post(sb, {"message": "hi", "agent_id": "scripted",
                                    "user_id": "u1", "user_token": signed(claims)})
    assert status == 200, reply


@pytest.mark.parametrize("with_iat", [True, False])
async def test_token_lifetime_is_capped(sb: Harness, with_iat: bool) -> None:
    await sb.scripted_agent(reply="ok")
    now = int(time.time())
    base: dict[str, Any] = {"user_id": "u1", **({"iat": now} if with_iat else {})}
    ok = signed({**base, "exp": now + MAX_TOKEN_LIFETIME_S})
    too_long = signed({**base, "exp": now + MAX_TOKEN_LIFETIME_S + JWT_LEEWAY_S + 60})
    status, reply = await post(sb, {"message": "hi", "agent_id": "scripted",
                                    "user_id": "u1", "user_token": ok})
    assert status == 200, reply
    status, reply = await post(sb, {"message": "hi", "agent_id": "scripted",
                                    "user_id": "u1", "user_token": too_long})
    assert status == 401, reply
    assert "too long" in str(reply)
