"""Identity verification (core.engine.identity): the user_token rules, directly and over
gRPC, so every dialect gets the same behaviour."""

from __future__ import annotations

import base64
import json
import time
import warnings
from dataclasses import replace
from typing import Any

import grpc
import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning

from core.demo.seed import DEMO_IDENTITY_SECRET
from core.engine.identity import JWT_LEEWAY_S, TRUSTED_CLAIMS, verify_user_token
from core.errors import Code, Reason, SwitchboardError
from harness import WIDGET, Harness, auth
from shim.core_client import decode_error
from switchboard.v1 import chat_pb2

SECRET = "s" * 32


def make(claims: dict[str, Any], secret: str = SECRET, alg: str = "HS256") -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, secret, algorithm=alg)


def claims(user_id: str = "u1", exp_in: float = 300, **extra: Any) -> dict[str, Any]:
    return {"user_id": user_id, "exp": int(time.time() + exp_in), **extra}


def forged(header: dict[str, Any], payload: dict[str, Any], signature: str = "") -> str:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64(header)}.{b64(payload)}.{signature}"


def rejected(token: str, secret: str = SECRET, user_id: str = "u1") -> SwitchboardError:
    with pytest.raises(SwitchboardError) as err:
        verify_user_token(token, secret, user_id)
    assert err.value.code is Code.UNAUTHENTICATED
    assert err.value.reason is Reason.IDENTITY_INVALID
    return err.value


def test_valid_token_returns_its_claims() -> None:
    out = verify_user_token(make(claims(email="a@b.c")), SECRET, "u1")
    assert out["email"] == "a@b.c" and out["user_id"] == "u1"


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_other_hmac_algorithms_are_rejected(alg: str) -> None:
    assert "HS256" in rejected(make(claims(), alg=alg)).message


def test_alg_none_is_rejected() -> None:
    error = rejected(forged({"alg": "none", "typ": "JWT"}, claims()))
    assert error.reason is Reason.IDENTITY_INVALID


def test_asymmetric_algorithms_are_rejected_before_any_key_use() -> None:
    # An RS256 header must not make the secret be used as a public key (alg confusion).
    error = rejected(forged({"alg": "RS256", "typ": "JWT"}, claims(), "c2ln"))
    assert error.reason is Reason.IDENTITY_INVALID


def test_wrong_secret_is_rejected() -> None:
    assert "signature" in rejected(make(claims(), secret="t" * 32)).message


def test_exp_is_required() -> None:
    assert "exp" in rejected(make({"user_id": "u1"})).message


def test_expiry_leeway_boundary() -> None:
    verify_user_token(make(claims(exp_in=-(JWT_LEEWAY_S - 5))), SECRET, "u1")
    assert "expired" in rejected(make(claims(exp_in=-(JWT_LEEWAY_S + 5)))).message


def test_not_yet_valid_is_rejected() -> None:
    error = rejected(make(claims(nbf=int(time.time()) + JWT_LEEWAY_S + 60)))
    assert error.reason is Reason.IDENTITY_INVALID


@pytest.mark.parametrize("claim", ["u2", "U1", "u1 ", 1, None])
def test_user_id_claim_must_match_exactly(claim: Any) -> None:
    assert rejected(make({**claims(), "user_id": claim})).reason is Reason.IDENTITY_INVALID


def test_missing_identity_secret_rejects_every_token() -> None:
    assert rejected(make(claims()), secret="").reason is Reason.IDENTITY_INVALID


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "a.b"])
def test_garbage_is_rejected(token: str) -> None:
    assert rejected(token).reason is Reason.IDENTITY_INVALID


def test_trusted_claims_are_the_documented_ones() -> None:
    assert set(TRUSTED_CLAIMS) == {"email", "name", "role", "plan", "company_id"}


# -- over gRPC: the same rules for a client that is not a dialect -------------------------

async def _require_identity(sb: Harness, **settings: Any) -> str:
    org = await sb.core.store.get_org(sb.org_id)
    assert org is not None
    await sb.core.store.update_org_settings(sb.org_id, replace(org.settings, **settings))
    return org.settings.identity_secret


async def test_grpc_required_identity_and_anonymous_policy(sb: Harness) -> None:
    await sb.scripted_agent(reply="ok")
    secret = await _require_identity(sb, require_identity=True, allow_anonymous=False)
    for user in ("", "anonymous", "u1"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await sb.chat_once("x", agent="scripted", user_id=user, key=WIDGET)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    token = make(claims("u1", name="Ada"), secret=secret)
    reply = await sb.chat_once("x", agent="scripted", user_id="u1", user_token=token)
    assert reply.completed.text == "ok"
    user = await sb.core.store.get_end_user(sb.org_id, "u1")
    assert user is not None and user.traits["name"] == "Ada"
    await _require_identity(sb, require_identity=True, allow_anonymous=True)
    reply = await sb.chat_once("x", agent="scripted")
    assert reply.completed.text == "ok"


async def test_grpc_bad_token_is_unauthenticated_with_reason(sb: Harness) -> None:
    await sb.scripted_agent(reply="ok")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sb.chat.Chat(chat_pb2.ChatRequest(turn=chat_pb2.TurnInput(
            message="x", agent="scripted", user_id="u1",
            user_token=make(claims("u2"), secret=DEMO_IDENTITY_SECRET),
        )), metadata=auth())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert decode_error(err.value).reason == Reason.IDENTITY_INVALID.value
    assert "user_id" in (err.value.details() or "")
