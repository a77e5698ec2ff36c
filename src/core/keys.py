"""API keys: generation, hashing, authentication.

Keys are stored as SHA-256 hashes (keys are high-entropy random strings, so a fast hash
is the right tool; a password KDF would only slow every request). The first characters
are kept as a display prefix.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from core.clock import Clock, IdSource
from core.domain import ApiKey, KeyKind, Principal
from core.errors import Code, Reason, SwitchboardError, unauthenticated
from core.store.base import Store

KEY_PREFIXES = {KeyKind.PUBLISHABLE: "ab_live_", KeyKind.SECRET: "sk_live_"}
MAX_KEY_CHARS = 512
_CACHE_TTL_S = 5.0  # bounds how long a revoked key keeps working on this replica


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def new_raw_key(kind: str) -> str:
    return KEY_PREFIXES[kind] + secrets.token_urlsafe(24)


def parse_bearer(header: str | None) -> str:
    """The key of an `authorization: Bearer <key>` value; raises UNAUTHENTICATED."""
    if not header:
        raise unauthenticated("Missing authorization: expected 'Bearer <key>'.")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_KEY_CHARS or " " in token:
        raise unauthenticated("Malformed authorization: expected 'Bearer <key>'.")
    return token


class SessionVerifier:
    """Verifies session tokens (flow dialect). Replaced by the flow engine's verifier."""

    def verify(self, token: str) -> Principal | None:
        return None


class Authenticator:
    def __init__(self, store: Store, clock: Clock, sessions: SessionVerifier | None = None) -> None:
        self._store = store
        self._clock = clock
        self.sessions = sessions or SessionVerifier()
        self._cache: dict[str, tuple[float, Principal]] = {}

    async def create_key(
        self, org_id: str, kind: str, ids: IdSource, name: str = "", raw: str | None = None,
        now: datetime | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; returns the record and the raw key (shown once, never stored)."""
        if kind not in (KeyKind.PUBLISHABLE, KeyKind.SECRET):
            raise ValueError(f"key kind must be publishable or secret, not {kind!r}")
        raw = raw or new_raw_key(kind)
        key = ApiKey(
            id=ids.uuid(), org_id=org_id, kind=kind, prefix=raw[:12], name=name,
            created_at=now or self._clock.now(),
        )
        await self._store.create_key(key, hash_key(raw))
        return key, raw

    async def authenticate(self, raw: str) -> Principal:
        session = self.sessions.verify(raw)
        if session is not None:
            return session
        digest = hash_key(raw)
        now = self._clock.monotonic()
        cached = self._cache.get(digest)
        if cached and now - cached[0] < _CACHE_TTL_S:
            return cached[1]
        key = await self._store.find_key(digest)
        if key is None or key.revoked:
            raise unauthenticated("Invalid API key.")
        principal = Principal(org_id=key.org_id, key_id=key.id, key_kind=key.kind)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now, principal)
        return principal


def require_kind(principal: Principal, *kinds: str) -> None:
    if principal.key_kind not in kinds:
        raise SwitchboardError(
            Code.PERMISSION_DENIED, Reason.KEY_SCOPE,
            f"A {principal.key_kind} key cannot call this; use a {' or '.join(kinds)} key.",
        )
