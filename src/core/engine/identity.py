"""Identity verification and the merge of stored user data with the request's.

`user_token` is a JWT signed with the organisation's identity secret, HS256 only; `exp`
is required (leeway `JWT_LEEWAY_S`); `exp`, `iat` and `nbf` must be JSON numbers; a token
may live at most `MAX_TOKEN_LIFETIME_S` (from `iat` when present, else from now); its
`user_id` claim must equal the request's `user_id` exactly. Trusted claims (email, name,
role, plan, company_id) override the request's untrusted `custom_fields`.

An unverified `user_id` is a claim, not an identity: without a valid token (and unless
the caller is a secret key, trusted server-side code) the stored profile of that user is
neither read into the model's input nor written, and an unverified `company_id` links
nothing. For verified users (and secret keys), stored traits and context are merged with
the request's; the request wins on conflicts, and the merge is persisted with the turn.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from core.clock import Clock
from core.domain import Organisation, TurnRequest
from core.errors import Code, Reason, SwitchboardError
from core.ids import canonical_conversation_id
from core.providers.base import ContextEntry
from core.store.base import EndUser, Store

JWT_LEEWAY_S = 30
# HS256 keys shorter than the hash output make the signature brute-forceable (RFC 7518 3.2).
MIN_IDENTITY_SECRET_BYTES = 32
# A user_token is a short-lived proof minted by the customer's backend: a day bounds the
# damage of a leaked token (and of one minted with a far-future exp by mistake).
MAX_TOKEN_LIFETIME_S = 24 * 3600
_TIME_CLAIMS = ("exp", "iat", "nbf")
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
        with warnings.catch_warnings():
            # A short secret is the organisation's setting, to be refused where it is set;
            # warning on every request would only flood the logs (and, in tests, fail).
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
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
    except jwt.ImmatureSignatureError as exc:
        raise _identity_error("user_token is not valid yet (nbf or iat).") from exc
    except jwt.PyJWTError as exc:
        raise _identity_error("user_token signature is invalid.") from exc
    for name in _TIME_CLAIMS:
        value = claims.get(name)
        # PyJWT accepts numeric strings ("9999999999"); the JWT spec says NumericDate.
        if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _identity_error(f"user_token's {name} claim must be a JSON number.")
    issued = claims.get("iat")
    start = float(issued) if issued is not None else time.time()
    if float(claims["exp"]) - start > MAX_TOKEN_LIFETIME_S + JWT_LEEWAY_S:
        raise _identity_error(
            f"user_token lives too long: at most {MAX_TOKEN_LIFETIME_S // 3600} hours "
            "from iat (or from now)."
        )
    if claims.get("user_id") != user_id:
        raise _identity_error("user_token's user_id claim does not match user_id.")
    return claims


def _entry_json(entry: ContextEntry) -> dict[str, Any]:
    return {"label": entry.label, "type": entry.type, "value": entry.value}


async def _company(
    store: Store, org_id: str, claims: dict[str, Any], stored: EndUser | None, requested: str
) -> tuple[str, dict[str, Any] | None]:
    """The user's company link and the company's data.

    A verified `company_id` claim wins (and relinks); otherwise an existing link stands;
    otherwise the request's `company_id` is looked up by external id and the user is linked
    to it when it exists (an unknown company is ignored, not an error)."""
    trusted = str(claims.get("company_id") or "")
    linked = stored.company_id if stored else ""
    company_id = trusted or linked or requested
    if not company_id:
        return "", None
    company = await store.get_company(org_id, company_id)
    if company is None and not (trusted or linked):
        return "", None
    return company_id, company


async def _conversation_context(store: Store, org_id: str, conversation_id: str) -> dict[str, Any]:
    """The context stored on the conversation being continued (anonymous users have no
    stored profile: their context lives on the conversation)."""
    canonical = canonical_conversation_id(conversation_id) if conversation_id else None
    if not canonical:
        return {}
    conversation = await store.get_conversation(org_id, canonical)
    return dict(conversation.context) if conversation is not None else {}


async def resolve_identity(
    store: Store, org: Organisation, request: TurnRequest, clock: Clock, *,
    trusted: bool = False,
) -> Identity:
    """Verify the request's identity and merge stored traits and context with the
    request's (request wins; trusted token claims win over everything). `trusted` (a
    secret-key caller) lets an unverified user_id stand for the stored user."""
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
    # Only a proven (or trusted) user_id reaches the stored profile.
    profiled = user_id != ANONYMOUS and (verified or trusted)
    stored = await store.get_end_user(org.id, user_id) if profiled else None
    traits = {**(stored.traits if stored else {}), **request.custom_fields}
    traits.update({k: claims[k] for k in TRUSTED_CLAIMS if k in claims})
    # Stored user context, then the conversation's, then the request's: the most specific
    # and most recent wins.
    context = {**(stored.context if stored else {})}
    context.update(await _conversation_context(store, org.id, request.conversation_id))
    context.update({k: _entry_json(v) for k, v in request.context.items()})
    entries = {
        k: ContextEntry(str(v.get("label", k)), str(v.get("type", "")), v.get("value"))
        for k, v in context.items()
        if isinstance(v, dict)
    }
    company_id, company = await _company(store, org.id, claims, stored,
                                         request.company_id if profiled else "")
    end_user = None
    if profiled:
        # The company's data is looked up on every turn, never copied into the profile.
        end_user = EndUser(org.id, user_id, company_id, dict(traits), context)
    if company is not None:
        traits["company"] = company
    return Identity(user_id, verified, traits, context, entries, end_user)
