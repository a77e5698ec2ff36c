"""Identity verification and the merge of stored user data with the request's.

`user_token` is a JWT signed with the organisation's identity secret, HS256 only; `exp`
is required (leeway `JWT_LEEWAY_S`); its `user_id` claim must equal the request's
`user_id` exactly. Trusted claims (email, name, role, plan, company_id) override the
request's untrusted `custom_fields`. Stored traits and context are merged with the
request's; the request wins on conflicts, and the merge is persisted with the turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jwt

from core.clock import Clock
from core.domain import Organisation, TurnRequest
from core.errors import Code, Reason, SwitchboardError
from core.providers.base import ContextEntry
from core.store.base import EndUser, Store

JWT_LEEWAY_S = 30
TRUSTED_CLAIMS = ("email", "name", "role", "plan", "company_id")
ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    verified: bool
    traits: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    context_entries: dict[str, ContextEntry] = field(default_factory=dict)
    end_user: EndUser | None = None


def _identity_error(message: str) -> SwitchboardError:
    return SwitchboardError(Code.UNAUTHENTICATED, Reason.IDENTITY_INVALID, message)


def verify_user_token(token: str, secret: str, user_id: str) -> dict[str, Any]:
    """Verify a user_token and return its claims; raises UNAUTHENTICATED identity_invalid.

    Expiry is checked against the wall clock (PyJWT's), not the injected clock."""
    if not secret:
        raise _identity_error("Identity verification is not configured for this organisation.")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise _identity_error("user_token is not a valid JWT.") from exc
    if header.get("alg") != "HS256":
        raise _identity_error("user_token must be signed with HS256.")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            options={"require": ["exp"], "verify_aud": False},
            leeway=JWT_LEEWAY_S,
        )
    except jwt.ExpiredSignatureError as exc:
        raise _identity_error("user_token has expired.") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise _identity_error("user_token must carry an exp claim.") from exc
    except jwt.PyJWTError as exc:
        raise _identity_error("user_token signature is invalid.") from exc
    if claims.get("user_id") != user_id:
        raise _identity_error("user_token's user_id claim does not match user_id.")
    return claims


def _entry_json(entry: ContextEntry) -> dict[str, Any]:
    return {"label": entry.label, "type": entry.type, "value": entry.value}


async def resolve_identity(
    store: Store, org: Organisation, request: TurnRequest, clock: Clock
) -> Identity:
    user_id = request.user_id or ANONYMOUS
    verified = False
    claims: dict[str, Any] = {}
    if request.user_token:
        claims = verify_user_token(request.user_token, org.settings.identity_secret, user_id)
        verified = True
    elif org.settings.require_identity and not (
        user_id == ANONYMOUS and org.settings.allow_anonymous
    ):
        raise SwitchboardError(
            Code.UNAUTHENTICATED, Reason.IDENTITY_REQUIRED,
            "This organisation requires identity verification: send a user_token.",
        )
    stored = await store.get_end_user(org.id, user_id) if user_id != ANONYMOUS else None
    traits = {**(stored.traits if stored else {}), **request.custom_fields}
    traits.update({k: claims[k] for k in TRUSTED_CLAIMS if k in claims})
    context = {**(stored.context if stored else {})}
    context.update({k: _entry_json(v) for k, v in request.context.items()})
    entries = {
        k: ContextEntry(str(v.get("label", k)), str(v.get("type", "")), v.get("value"))
        for k, v in context.items()
        if isinstance(v, dict)
    }
    company_id = str(claims.get("company_id") or (stored.company_id if stored else "") or "")
    if not company_id and request.company_id:
        company_id = request.company_id
    if company_id:
        company = await store.get_company(org.id, company_id)
        if company is not None:
            traits.setdefault("company", company)
    end_user = None
    if user_id != ANONYMOUS:
        end_user = EndUser(org.id, user_id, company_id, traits, context)
    return Identity(user_id, verified, traits, context, entries, end_user)
