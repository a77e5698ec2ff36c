"""What may be registered as a webhook endpoint, the signature scheme, and the retry
schedule (pure rules; the end-to-end behaviour is in test_webhooks_out.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.outbox.deliveries import (
    DELIVERED,
    FAILED,
    PENDING,
    RETRY_FIRST_DELAY_S,
    RETRY_JITTER,
    RETRY_MAX_DELAY_S,
    Delivery,
    next_outcome,
    retry_delay,
)
from core.outbox.endpoints import (
    MAX_SECRET_BYTES,
    MAX_URL_CHARS,
    MIN_SECRET_BYTES,
    EndpointError,
    check_secret,
    check_url,
    generate_secret,
    parse_events,
)
from core.outbox.events import EVENT_TYPES, TURN_COMPLETED
from core.outbox.signing import SignatureError, sign, verify

NOW = 1_767_225_600
BODY = b'{"id":"evt_1","type":"turn.completed"}'
SECRET = "whsec_" + "a" * 40


@pytest.mark.parametrize("url", [
    "https://hooks.example.com/switchboard", "https://hooks.example.com:8443/a?b=c",
    "http://localhost:4242/webhooks", "http://127.0.0.1:9/x", "http://[::1]:8000/",
])
def test_accepted_urls(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(("url", "why"), [
    ("", "empty"), ("hooks.example.com/x", "https://"), ("ftp://example.com/", "https://"),
    ("http://example.com/x", "must use https"), ("http://10.0.0.1/x", "must use https"),
    ("https://user:pw@example.com/", "user name"), ("https://example.com/#x", "fragment"),
    ("https://example.com:99999/", "invalid port"), ("https://exa mple.com/", "spaces"),
    ("https:///nohost", "https://"),
])
def test_refused_urls_say_why(url: str, why: str) -> None:
    with pytest.raises(EndpointError, match=why):
        check_url(url)


def test_a_url_may_be_max_url_chars_long() -> None:
    base = "https://example.com/"
    check_url(base + "a" * (MAX_URL_CHARS - len(base)))
    with pytest.raises(EndpointError, match="longer than"):
        check_url(base + "a" * (MAX_URL_CHARS - len(base) + 1))


def test_secret_length_bounds() -> None:
    check_secret("s" * MIN_SECRET_BYTES)
    check_secret("s" * MAX_SECRET_BYTES)
    with pytest.raises(EndpointError, match="at least"):
        check_secret("s" * (MIN_SECRET_BYTES - 1))
    with pytest.raises(EndpointError, match="at most"):
        check_secret("s" * (MAX_SECRET_BYTES + 1))
    with pytest.raises(EndpointError, match="printable"):
        check_secret("s" * 32 + " x")
    generated = generate_secret()
    assert generated.startswith("whsec_") and check_secret(generated) == generated


def test_event_lists() -> None:
    assert parse_events([]) == () and parse_events(["*"]) == ()
    assert parse_events(["turn.completed,message.created", "turn.completed"]) == (
        TURN_COMPLETED, "message.created")
    assert parse_events([",".join(EVENT_TYPES)]) == EVENT_TYPES
    with pytest.raises(EndpointError, match=r"unknown event type 'turn\.done'"):
        parse_events(["turn.done"])


def test_a_signature_verifies_and_a_tampered_body_does_not() -> None:
    header = sign(SECRET, NOW, BODY)
    assert header.startswith(f"t={NOW},v1=") and len(header.split("v1=")[1]) == 64
    assert verify(SECRET, header, BODY, NOW + 10) == NOW
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, header, BODY.replace(b"turn", b"tUrn"), NOW)
    with pytest.raises(SignatureError, match="does not match"):
        verify("whsec_" + "b" * 40, header, BODY, NOW)
    with pytest.raises(SignatureError, match="does not match"):  # t is signed too
        verify(SECRET, header.replace(f"t={NOW}", f"t={NOW + 1}"), BODY, NOW)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(SECRET, header, BODY, NOW + 301)
    with pytest.raises(SignatureError, match="malformed"):
        verify(SECRET, "sha256=abc", BODY, NOW)
    # Several v1 values (a secret being rolled): one matching is enough.
    assert verify(SECRET, f"t={NOW},v1={'0' * 64},{header.split(',')[1]}", BODY, NOW) == NOW


def test_the_retry_delay_doubles_to_a_cap_with_jitter_below_it() -> None:
    assert [retry_delay(n, lambda: 0.0) for n in (1, 2, 3)] == [
        RETRY_FIRST_DELAY_S, 2 * RETRY_FIRST_DELAY_S, 4 * RETRY_FIRST_DELAY_S]
    assert retry_delay(40, lambda: 0.0) == RETRY_MAX_DELAY_S
    assert retry_delay(1, lambda: 1.0) == RETRY_FIRST_DELAY_S * (1 - RETRY_JITTER)


def test_an_attempt_is_delivered_retried_or_given_up_at_the_deadline() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    deadline = start + timedelta(hours=24)
    d = Delivery(1, "tok", "evt_1", TURN_COMPLETED, "{}", "we_1", "https://x", SECRET, 0,
                 deadline)
    assert next_outcome(d, start, True, 204, "", lambda: 0.0).status == DELIVERED
    retry = next_outcome(d, start, False, 500, "x" * 1000, lambda: 0.0)
    assert retry.status == PENDING and retry.next_attempt_at == start + timedelta(seconds=10)
    assert len(retry.error) == 300
    late = next_outcome(d, deadline - timedelta(seconds=1), False, 500, "", lambda: 0.0)
    assert late.status == PENDING and late.next_attempt_at == deadline  # one last try
    assert next_outcome(d, deadline, False, 0, "refused", lambda: 0.0).status == FAILED
