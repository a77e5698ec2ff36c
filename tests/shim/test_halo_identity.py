"""Halo identity verification over HTTP: user_token rules and organisation policy."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any

import pytest
from halo_client import post, token

from core.engine.identity import JWT_LEEWAY_S
from harness import Harness


@pytest.fixture
async def echo(sb: Harness) -> Harness:
    await sb.scripted_agent(reply="ok")
    return sb


def body(user_id: str = "user_123", **fields: Any) -> dict[str, Any]:
    return {"message": "hi", "agent_id": "scripted", "user_id": user_id, **fields}


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned(alg: str, user_id: str = "user_123") -> str:
    import time

    claims = {"user_id": user_id, "exp": int(time.time()) + 300}
    return f"{_b64({'alg': alg, 'typ': 'JWT'})}.{_b64(claims)}.c2ln"


async def require_identity(sb: Harness, *, allow_anonymous: bool) -> None:
    org = await sb.core.store.get_org(sb.org_id)
    assert org is not None
    await sb.core.store.update_org_settings(sb.org_id, replace(
        org.settings, require_identity=True, allow_anonymous=allow_anonymous
    ))


async def test_valid_token_is_accepted_and_trusted_claims_override(echo: Harness) -> None:
    tok = token(email="real@acme.example", plan="enterprise", role="admin")
    status, reply = await post(echo, body(
        user_token=tok, custom_fields={"plan": "free", "email": "fake@x", "color": "blue"}
    ))
    assert status == 200, reply
    user = await echo.core.store.get_end_user(echo.org_id, "user_123")
    assert user is not None
    assert user.traits == {"plan": "enterprise", "email": "real@acme.example",
                           "role": "admin", "color": "blue"}


@pytest.mark.parametrize("make", [
    pytest.param(lambda: token(algorithm="HS512"), id="HS512"),
    pytest.param(lambda: token(algorithm="HS384"), id="HS384"),
    pytest.param(lambda: unsigned("none"), id="alg-none"),
    pytest.param(lambda: unsigned("RS256"), id="RS256"),
    pytest.param(lambda: token(secret="x" * 40), id="wrong-secret"),
    pytest.param(lambda: token(exp_in=-(JWT_LEEWAY_S + 5)), id="expired"),
    pytest.param(lambda: token(exp_in=None), id="no-exp"),
    pytest.param(lambda: token("someone_else"), id="other-user"),
    pytest.param(lambda: token("USER_123"), id="case-differs"),
    pytest.param(lambda: "not.a.jwt", id="garbage"),
])
async def test_bad_tokens_are_401(echo: Harness, make: Any) -> None:
    status, reply = await post(echo, body(user_token=make()))
    assert status == 401, reply
    assert reply["error"]["code"] == "identity_invalid"


async def test_expiry_leeway_boundary(echo: Harness) -> None:
    # Within the leeway (a few seconds of margin for the test's own clock) it passes.
    status, _ = await post(echo, body(user_token=token(exp_in=-(JWT_LEEWAY_S - 5))))
    assert status == 200
    status, _ = await post(echo, body(user_token=token(exp_in=-(JWT_LEEWAY_S + 5))))
    assert status == 401


async def test_token_for_anonymous_must_match_anonymous(echo: Harness) -> None:
    status, reply = await post(echo, {"message": "hi", "agent_id": "scripted",
                                      "user_token": token("user_123")})
    assert status == 401 and reply["error"]["code"] == "identity_invalid"


async def test_required_identity_refuses_unverified_users(echo: Harness) -> None:
    await require_identity(echo, allow_anonymous=True)
    status, reply = await post(echo, body())
    assert status == 401 and reply["error"]["code"] == "identity_required"
    status, _ = await post(echo, body(user_token=token()))
    assert status == 200
    status, _ = await post(echo, {"message": "hi", "agent_id": "scripted"})
    assert status == 200  # anonymous users stay possible when allowed


async def test_required_identity_without_anonymous(echo: Harness) -> None:
    await require_identity(echo, allow_anonymous=False)
    for payload in ({"message": "hi", "agent_id": "scripted"},
                    {"message": "hi", "agent_id": "scripted", "user_id": "anonymous"}):
        status, reply = await post(echo, payload)
        assert status == 401 and reply["error"]["code"] == "identity_required"
    status, _ = await post(echo, body(user_token=token()))
    assert status == 200


async def test_invalid_token_is_refused_even_when_not_required(echo: Harness) -> None:
    status, reply = await post(echo, body(user_token=token(secret="y" * 40)))
    assert status == 401 and reply["error"]["code"] == "identity_invalid"
