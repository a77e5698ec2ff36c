"""The `Switchboard-Signature` header, signed as Stripe signs its webhooks.

`Switchboard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, keyed
with the endpoint's secret. The timestamp is signed with the body, so a receiver that
also refuses old timestamps (`DEFAULT_TOLERANCE_S`) is protected against replays. Each
attempt signs anew (a retry carries a fresh `t`, the same body and event id).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

SIGNATURE_HEADER: Final = "Switchboard-Signature"
EVENT_ID_HEADER: Final = "Switchboard-Event-Id"
EVENT_TYPE_HEADER: Final = "Switchboard-Event-Type"
# How old a signed timestamp a receiver accepts (Stripe's libraries default to 5 minutes).
DEFAULT_TOLERANCE_S: Final = 300


class SignatureError(ValueError):
    """A request whose signature header is missing, malformed, stale or wrong."""


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body,
                    hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header value for `body` sent at `timestamp`."""
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def verify(secret: str, header: str, body: bytes, now: int,
           tolerance_s: int = DEFAULT_TOLERANCE_S) -> int:
    """Check a received request; returns its signed timestamp or raises SignatureError.
    Any one `v1` that matches is enough (room for signing with two secrets at once)."""
    timestamp = -1
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp < 0 or not candidates:
        raise SignatureError("malformed Switchboard-Signature header")
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError("signature timestamp outside the tolerance")
    expected = _digest(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise SignatureError("signature does not match the body")
    return timestamp
