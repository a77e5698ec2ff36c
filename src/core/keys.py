"""API keys: generation, hashing, authentication, revocation and rotation.

Keys are stored as SHA-256 hashes (keys are high-entropy random strings, so a fast hash
is the right tool; a password KDF would only slow every request). The first characters
are kept as a display prefix.

A key is valid until revoked, or (after a rotation) until the end of its overlap. Each
process caches a verdict for `KEY_CACHE_TTL_S`, so a revoked key (and every flow session
token it issued) is refused on every replica within that time.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from core.clock import Clock, IdSource
from core.domain import ApiKey, KeyKind, Principal
from core.errors import Code, Reason, SwitchboardError, unauthenticated
from core.store.base import Store

KEY_PREFIXES = {KeyKind.PUBLISHABLE: "ab_live_", KeyKind.SECRET: "sk_live_",
                KeyKind.OPERATOR: "op_live_"}
MAX_KEY_CHARS = 512
# Bounds how long a revoked key keeps working on a replica ("refused within one second").
KEY_CACHE_TTL_S = 0.5
# After `keys rotate`, the old key keeps working this long so deployments can switch.
DEFAULT_ROTATION_OVERLAP_S = 24 * 3600
_MAX_CACHED = 10_000


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
        self._issuers: dict[str, tuple[float, bool]] = {}  # key id -> (checked at, valid)

    async def create_key(
        self, org_id: str, kind: str, ids: IdSource, name: str = "", raw: str | None = None,
        now: datetime | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; returns the record and the raw key (shown once, never stored)."""
        if kind not in KEY_PREFIXES:
            raise ValueError(f"key kind must be publishable, secret or operator, not {kind!r}")
        raw = raw or new_raw_key(kind)
        key = ApiKey(
            id=ids.uuid(), org_id=org_id, kind=kind, prefix=raw[:12], name=name,
            created_at=now or self._clock.now(),
        )
        await self._store.create_key(key, hash_key(raw))
        return key, raw

    def _valid(self, key: ApiKey | None) -> bool:
        return key is not None and not key.revoked and (
            key.expires_at is None or self._clock.now() < key.expires_at)

    async def authenticate(self, raw: str) -> Principal:
        session = self.sessions.verify(raw)
        if session is not None:
            # A session is as good as the key that issued it.
            if not await self._issuer_valid(session.key_id):
                raise unauthenticated("Invalid session token: its key was revoked.")
            return session
        digest = hash_key(raw)
        now = self._clock.monotonic()
        cached = self._cache.get(digest)
        if cached and now - cached[0] < KEY_CACHE_TTL_S:
            return cached[1]
        key = await self._store.find_key(digest)
        if key is None or not self._valid(key):
            self._cache.pop(digest, None)
            raise unauthenticated("Invalid API key.")
        principal = Principal(org_id=key.org_id, key_id=key.id, key_kind=key.kind,
                              key_name=key.name if key.kind == KeyKind.OPERATOR else "")
        if len(self._cache) > _MAX_CACHED:
            self._cache.clear()
        self._cache[digest] = (now, principal)
        return principal

    async def _issuer_valid(self, key_id: str) -> bool:
        now = self._clock.monotonic()
        cached = self._issuers.get(key_id)
        if cached and now - cached[0] < KEY_CACHE_TTL_S:
            return cached[1]
        valid = self._valid(await self._store.get_key(key_id))
        if len(self._issuers) > _MAX_CACHED:
            self._issuers.clear()
        self._issuers[key_id] = (now, valid)
        return valid

    async def revoke(self, key_id: str) -> bool:
        return await self._store.revoke_key(key_id, self._clock.now())

    async def rotate(self, key_id: str, ids: IdSource,
                     overlap_s: float = DEFAULT_ROTATION_OVERLAP_S) -> tuple[ApiKey, str]:
        """A new key of the same organisation, kind and name; the old one stays valid for
        `overlap_s` seconds. Raises LookupError for an unknown or unusable key."""
        old = await self._store.get_key(key_id)
        if old is None or not self._valid(old):
            raise LookupError(f"no valid key {key_id!r}")
        new = await self.create_key(old.org_id, old.kind, ids, name=old.name)
        await self._store.expire_key(old.id, self._clock.now() + timedelta(seconds=overlap_s))
        return new


def require_kind(principal: Principal, *kinds: str) -> None:
    if principal.key_kind not in kinds:
        raise SwitchboardError(
            Code.PERMISSION_DENIED, Reason.KEY_SCOPE,
            f"A {principal.key_kind} key cannot call this; use a {' or '.join(kinds)} key.",
        )
