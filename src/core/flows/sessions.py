"""Session tokens of the flow dialect: signed, stateless, bound to org, agent,
conversation and the API key that created them, valid for one hour.

Format: `sess_<payload>.<signature>`, both base64url without padding; the payload is
compact JSON `{"o": org, "a": agent, "c": conversation, "k": issuing key id, "e": expiry
(unix seconds)}`, the signature HMAC-SHA256 over the payload text with a server secret.
The secret is created once and kept in the store (`server_secrets`), so every core replica
sharing the database accepts the same tokens and they survive restarts; nothing is written
per session. Rotating the secret (deleting the row) invalidates every session at once.
Expiry is read from the injected clock; a token is valid while `now < expiry`.

A session acts as its key for rate limits and stream caps (the principal's `key_id` is the
issuing key's id), so every session of one widget key shares that key's bucket. A token
without `k` (issued before sessions carried their key) is invalid.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

from core.clock import Clock, IdSource
from core.domain import KeyKind, Principal
from core.errors import Code, Reason, SwitchboardError, unauthenticated
from core.flows import limits
from core.flows.store import flow_store
from core.keys import SessionVerifier
from core.store.base import Store

PREFIX = "sess_"
SECRET_NAME = "flow_session_hmac"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionTokens(SessionVerifier):
    """Issues and verifies session tokens (the Authenticator's `sessions` hook)."""

    def __init__(self, clock: Clock, ttl_s: float = limits.SESSION_TTL_S) -> None:
        self._clock = clock
        self._ttl_s = ttl_s
        self._secret = b""

    async def load(self, store: Store, ids: IdSource) -> None:
        """Read (or create, first start) the signing secret."""
        secret = await flow_store(store).get_or_create_secret(SECRET_NAME, ids.token(32))
        self._secret = secret.encode("utf-8")

    def _sign(self, payload: str) -> str:
        if not self._secret:
            raise RuntimeError("session secret not loaded")
        return _b64(hmac.new(self._secret, payload.encode("ascii"), hashlib.sha256).digest())

    def issue(self, org_id: str, agent_id: str, conversation_id: str,
              key_id: str) -> tuple[str, datetime]:
        if not key_id:
            raise ValueError("a session is issued by a key")
        expires = self._clock.now() + timedelta(seconds=self._ttl_s)
        expiry = int(expires.timestamp())
        body = {"o": org_id, "a": agent_id, "c": conversation_id, "k": key_id, "e": expiry}
        payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
        return f"{PREFIX}{payload}.{self._sign(payload)}", datetime.fromtimestamp(expiry, UTC)

    def verify(self, token: str) -> Principal | None:
        """None for tokens that are not session tokens (API keys); raises UNAUTHENTICATED
        for a session token that is tampered with or expired."""
        if not token.startswith(PREFIX):
            return None
        payload, _, signature = token[len(PREFIX):].partition(".")
        if (len(token) > limits.MAX_SESSION_TOKEN_CHARS or not payload or not signature
                or not self._secret
                or not hmac.compare_digest(signature, self._sign(payload))):
            raise unauthenticated("Invalid session token.")
        try:
            body = json.loads(_unb64(payload))
            org_id, agent_id, conversation_id = str(body["o"]), str(body["a"]), str(body["c"])
            key_id = body["k"]
            expires = int(body["e"])
        except (ValueError, KeyError, TypeError):
            raise unauthenticated("Invalid session token.") from None
        if not isinstance(key_id, str) or not key_id:
            raise unauthenticated("Invalid session token.")
        if self._clock.now().timestamp() >= expires:
            raise SwitchboardError(Code.UNAUTHENTICATED, Reason.SESSION_EXPIRED,
                                   "The session has expired; create a new one.")
        return Principal(
            org_id=org_id, key_id=key_id, key_kind=KeyKind.SESSION,
            agent_id=agent_id, conversation_id=conversation_id,
        )
