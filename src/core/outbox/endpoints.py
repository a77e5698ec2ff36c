"""An organisation's webhook endpoints and the rules for what may be registered.

- URL: `https://` with a host, at most `MAX_URL_CHARS`; plain `http://` only to the
  machine itself (`localhost`, `127.0.0.1`, `[::1]`), for development receivers. No user
  name or password in the URL (the signature authenticates us), no fragment.
- Secret: `MIN_SECRET_BYTES` to `MAX_SECRET_BYTES` bytes of printable ASCII without spaces
  (what fits in an environment variable and a config file unquoted). The floor is the
  identity secret's: 256 bits, as an HMAC-SHA256 key should have. `generate_secret` makes
  one (`whsec_` + 43 URL-safe characters).
- Events: any of `core.outbox.events.EVENT_TYPES`; none (or `*`) means every type,
  including types added later.
- At most `MAX_ENDPOINTS_PER_ORG` endpoints per organisation (each event is written once
  per subscribed endpoint, in the turn's own transaction).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from urllib.parse import urlsplit

from core.outbox.events import EVENT_TYPES

MAX_URL_CHARS: Final = 2048
MIN_SECRET_BYTES: Final = 32
MAX_SECRET_BYTES: Final = 256
MAX_ENDPOINTS_PER_ORG: Final = 16
SECRET_PREFIX: Final = "whsec_"
ENDPOINT_ID_PREFIX: Final = "we_"
ALL_EVENTS: Final = "*"
LOCAL_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})


class EndpointError(ValueError):
    """An endpoint that may not be registered; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    id: str
    org_id: str
    url: str
    secret: str
    events: tuple[str, ...]  # () = every event type
    created_at: datetime

    def wants(self, event_type: str) -> bool:
        return not self.events or event_type in self.events

    @property
    def events_text(self) -> str:
        """As stored: the types joined by commas, or `*` for every type."""
        return ",".join(self.events) if self.events else ALL_EVENTS


def check_url(url: str) -> str:
    url = url.strip()
    if not url:
        raise EndpointError("the webhook URL is empty")
    if len(url) > MAX_URL_CHARS:
        raise EndpointError(f"the webhook URL is longer than {MAX_URL_CHARS} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise EndpointError("the webhook URL contains spaces or control characters")
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise EndpointError(f"the webhook URL must be https://HOST/...: {url!r}")
    if parts.scheme == "http" and host not in LOCAL_HOSTS:
        raise EndpointError("the webhook URL must use https (plain http only to localhost, "
                            "127.0.0.1 or [::1])")
    if parts.username is not None or parts.password is not None:
        raise EndpointError("the webhook URL must not carry a user name or password")
    if parts.fragment:
        raise EndpointError("the webhook URL must not have a #fragment")
    try:
        parts.port  # noqa: B018 - raises on a port out of range or not a number
    except ValueError:
        raise EndpointError("the webhook URL has an invalid port") from None
    return url


def check_secret(secret: str) -> str:
    size = len(secret.encode("utf-8"))
    if size < MIN_SECRET_BYTES:
        raise EndpointError(f"the webhook secret must be at least {MIN_SECRET_BYTES} bytes "
                            "(omit it and one is generated)")
    if size > MAX_SECRET_BYTES:
        raise EndpointError(f"the webhook secret must be at most {MAX_SECRET_BYTES} bytes")
    if not all(0x21 <= ord(c) <= 0x7E for c in secret):
        raise EndpointError("the webhook secret must be printable ASCII without spaces")
    return secret


def parse_events(values: Iterable[str]) -> tuple[str, ...]:
    """`--events` values (comma-separated, repeatable) as stored; () for every type."""
    chosen: list[str] = []
    for value in values:
        for name in value.split(","):
            name = name.strip()
            if not name:
                continue
            if name == ALL_EVENTS:
                return ()
            if name not in EVENT_TYPES:
                raise EndpointError(f"unknown event type {name!r} (one of: "
                                    f"{', '.join(EVENT_TYPES)})")
            if name not in chosen:
                chosen.append(name)
    return tuple(chosen)


def events_from_text(text: str) -> tuple[str, ...]:
    return () if text in ("", ALL_EVENTS) else tuple(text.split(","))


def generate_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def masked(secret: str) -> str:
    """What `webhooks list` shows of a secret: enough to tell two apart."""
    return secret[:10] + "…" if len(secret) > 14 else "…"
