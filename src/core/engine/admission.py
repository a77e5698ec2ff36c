"""Admission: the one check every route that reads or changes a conversation passes.

Send, stream, stop, resume (tool results), ResumeStream, GetConversation, ListMessages
and flow messages all ask the same three questions, in this order:

1. **Origin.** A publishable key, and every flow session token it issued, works only from
   the organisation's allowed origins when the call carries a browser Origin.
2. **Key kind.** Dialects documented as server-side APIs (slug) need a secret key. The
   dialect name is the client's own word over gRPC, so it is not what keeps a slug
   conversation private: its owner is (3).
3. **Owner.** Each conversation records who started it (`ConversationRecord.owner`):
   - `secret`: a secret key (trusted server-side code). Only secret keys may use it.
   - `user:<id>`: a verified user (a valid `user_token`). Only that same verified user,
     or a secret key, may continue, resume, stop or read it.
   - `anonymous`: nobody verified. Presenting its id is the credential, but a verified
     user never takes over an anonymous conversation started under another user id.
   A flow session token is admitted to the one conversation it was issued for (its
   issuer passed this check when it asked for the token).

A refused owner check answers NOT_FOUND, exactly as for an id that does not exist, so a
visitor cannot probe which conversation ids are live.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.domain import ConversationRecord, KeyKind, Organisation, Principal
from core.engine.identity import ANONYMOUS, verify_user_token
from core.errors import Code, Reason, SwitchboardError, not_found
from core.ids import canonical_conversation_id
from core.keys import require_kind
from core.origins import origin_allowed
from core.store.base import Store

OWNER_SECRET = "secret"
OWNER_ANONYMOUS = "anonymous"
OWNER_USER_PREFIX = "user:"
# Dialects documented as server-side APIs (secret key): a widget key is refused there.
SECRET_KEY_DIALECTS = frozenset({"slug"})


@dataclass(frozen=True, slots=True)
class Caller:
    """The end user behind a request, as far as the core can tell: `user_id` is the
    claimed id ("anonymous" when none), `verified` whether a valid user_token proved it."""

    user_id: str = ANONYMOUS
    verified: bool = False


def owner_for(principal: Principal, caller: Caller) -> str:
    """The owner recorded on a conversation this caller starts."""
    if principal.key_kind == KeyKind.SECRET:
        return OWNER_SECRET
    if caller.verified:
        return OWNER_USER_PREFIX + caller.user_id
    return OWNER_ANONYMOUS


def trusted_user(conversation: ConversationRecord) -> str:
    """The conversation's user id when it was vouched for (started by a secret-key caller
    or a verified user), else "" (an unverified claim bills the visitor instead)."""
    owner = conversation.owner
    if owner == OWNER_SECRET or owner.startswith(OWNER_USER_PREFIX):
        return conversation.user_id
    return ""


def may_use(principal: Principal, caller: Caller, conversation: ConversationRecord) -> bool:
    if principal.key_kind == KeyKind.SECRET:
        return True
    if principal.conversation_id:
        return principal.conversation_id == conversation.id
    owner = conversation.owner
    if owner == OWNER_SECRET:
        return False
    if owner.startswith(OWNER_USER_PREFIX):
        return caller.verified and owner == OWNER_USER_PREFIX + caller.user_id
    return not caller.verified or caller.user_id == conversation.user_id


def check_origin(principal: Principal, org: Organisation, origin: str) -> None:
    """Publishable keys and the sessions they issue only work from the organisation's
    allowed origins when called from a browser (an Origin header); server-side calls
    carry no Origin. (A session issued by a secret key is checked too: the origin list
    is the organisation's, and a browser holding such a session is on one of them.)"""
    allowed = org.settings.allowed_origins
    if principal.key_kind == KeyKind.SECRET or not origin or not allowed:
        return
    if not origin_allowed(allowed, origin):  # exact, "*", or a port wildcard (core.origins)
        raise SwitchboardError(
            Code.PERMISSION_DENIED, Reason.ORIGIN_NOT_ALLOWED,
            f"Origin {origin} is not allowed for this key.",
        )


async def admit_key(store: Store, principal: Principal, origin: str,
                    dialect: str = "") -> Organisation:
    """The key's organisation, once the browser origin and the dialect's key rules allow
    the call."""
    org = await store.get_org(principal.org_id)
    if org is None:
        raise SwitchboardError(Code.UNAUTHENTICATED, Reason.UNAUTHENTICATED, "Unknown key.")
    check_origin(principal, org, origin)
    if dialect in SECRET_KEY_DIALECTS:
        require_kind(principal, KeyKind.SECRET)
    return org


def caller_of(principal: Principal, org: Organisation, user_id: str,
              user_token: str) -> Caller:
    """Verify the caller's user_token (if any) and apply `require_identity`; raises
    UNAUTHENTICATED identity_invalid / identity_required. Secret keys are trusted
    server-side code: their user_id stands as given."""
    user_id = user_id or ANONYMOUS
    if user_token:
        verify_user_token(user_token, org.settings.identity_secret, user_id)
        return Caller(user_id, True)
    if principal.key_kind == KeyKind.SECRET:
        return Caller(user_id, user_id != ANONYMOUS)
    if org.settings.require_identity and not (
        user_id == ANONYMOUS and org.settings.allow_anonymous
    ):
        raise SwitchboardError(
            Code.UNAUTHENTICATED, Reason.IDENTITY_REQUIRED,
            "This organisation requires identity verification: send a user_token.",
        )
    return Caller(user_id, False)


def check_owner(principal: Principal, caller: Caller, conversation: ConversationRecord,
                reference: str = "") -> None:
    if not may_use(principal, caller, conversation):
        raise not_found(
            Reason.CONVERSATION_NOT_FOUND,
            f"Conversation '{reference or conversation.id}' not found.",
        )


async def find_conversation(store: Store, principal: Principal,
                            conversation_id: str) -> ConversationRecord:
    """The conversation an id names (any dialect's rendering), within the key's
    organisation and the session's binding; NOT_FOUND otherwise. No owner check."""
    canonical = canonical_conversation_id(conversation_id)
    conversation = (
        await store.get_conversation(principal.org_id, canonical) if canonical else None
    )
    if conversation is None or (
        principal.conversation_id and principal.conversation_id != conversation.id
    ):
        raise not_found(
            Reason.CONVERSATION_NOT_FOUND, f"Conversation '{conversation_id}' not found.",
        )
    return conversation


@dataclass(frozen=True, slots=True)
class Access:
    """What a read or control call presents besides its key."""

    origin: str = ""
    dialect: str = ""
    user_id: str = ""
    user_token: str = ""


async def admit_conversation(store: Store, principal: Principal, conversation_id: str,
                             access: Access) -> ConversationRecord:
    """The full admission of a call that reads or controls an existing conversation
    (stop, ResumeStream, GetConversation, ListMessages)."""
    org = await admit_key(store, principal, access.origin, access.dialect)
    caller = caller_of(principal, org, access.user_id, access.user_token)
    conversation = await find_conversation(store, principal, conversation_id)
    check_owner(principal, caller, conversation, conversation_id)
    return conversation
