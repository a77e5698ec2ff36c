"""Deliveries (one per event and subscribed endpoint) and the retry schedule.

A delivery is `pending` until an attempt gets a 2xx (`delivered`), the retry window
(`RETRY_WINDOW_S`, 24 hours from the event) runs out (`failed`), or its endpoint is
removed (`cancelled`). After a failed attempt the next one waits `RETRY_FIRST_DELAY_S`,
doubling per attempt up to `RETRY_MAX_DELAY_S`, each delay shortened by a random part of
up to `RETRY_JITTER` of it (so endpoints that failed together do not retry together);
the last attempt happens at the end of the window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

RETRY_FIRST_DELAY_S: Final = 10.0
RETRY_MAX_DELAY_S: Final = 3600.0
RETRY_JITTER: Final = 0.5
RETRY_WINDOW_S: Final = 24 * 3600.0

PENDING: Final = "pending"
DELIVERED: Final = "delivered"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"
STATUSES: Final = (PENDING, DELIVERED, FAILED, CANCELLED)

# The most rows `webhooks deliveries` (Store.list_deliveries) returns at once.
MAX_LISTED_DELIVERIES: Final = 1000
# How much of a receiver's error text the delivery log keeps.
MAX_ERROR_CHARS: Final = 300
# Finished deliveries (and events none of which is pending) are kept this long.
DELIVERY_LOG_RETENTION_DAYS: Final = 30


def retry_delay(attempts: int, rng: Callable[[], float]) -> float:
    """Seconds before the next attempt, after `attempts` failed ones (>= 1)."""
    base = min(RETRY_FIRST_DELAY_S * 2.0 ** min(attempts - 1, 30), RETRY_MAX_DELAY_S)
    return base * (1.0 - RETRY_JITTER * rng())


@dataclass(frozen=True, slots=True)
class Delivery:
    """A claimed delivery, with what an attempt needs to send it."""

    id: int
    claim_token: str
    event_id: str
    event_type: str
    body: str
    endpoint_id: str
    url: str
    secret: str
    attempts: int  # attempts made before this one
    deadline: datetime  # no attempt after this


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one attempt came to, as the dispatcher stores it (`Store.finish_delivery`)."""

    delivery_id: int
    claim_token: str
    status: str  # DELIVERED, PENDING (retry at next_attempt_at) or FAILED
    attempted_at: datetime
    http_status: int = 0  # 0: no response (refused, timed out)
    error: str = ""
    next_attempt_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One row of the delivery log."""

    id: int
    event_id: str
    event_type: str
    org_id: str
    conversation_id: str
    endpoint_id: str
    url: str
    status: str
    attempts: int
    last_status: int
    last_error: str
    next_attempt_at: datetime | None  # None unless pending
    delivered_at: datetime | None
    created_at: datetime


def next_outcome(delivery: Delivery, now: datetime, ok: bool, http_status: int, error: str,
                 rng: Callable[[], float]) -> AttemptResult:
    """The stored outcome of an attempt: delivered, retried later, or given up."""
    error = error[:MAX_ERROR_CHARS]
    if ok:
        return AttemptResult(delivery.id, delivery.claim_token, DELIVERED, now, http_status)
    if now >= delivery.deadline:
        return AttemptResult(delivery.id, delivery.claim_token, FAILED, now, http_status,
                             error)
    wait = retry_delay(delivery.attempts + 1, rng)
    at = min(now + timedelta(seconds=wait), delivery.deadline)
    return AttemptResult(delivery.id, delivery.claim_token, PENDING, now, http_status, error,
                         at)
