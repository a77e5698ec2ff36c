"""Every Prometheus metric family Switchboard exports, in the process's default registry.

The shim and the core share one process by default, so one registry serves both (`GET
/metrics` on the shim; `--metrics-port` for `--role core`). Label values are bounded: route
templates (never raw paths), gRPC method names of registered services, status codes, stable
error reasons, store method names, and agent/provider/model names that come from stored agent
definitions; never ids or user input. A process running several workers would need
prometheus-client's multiprocess mode (see docs/operations.md).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Sized
from typing import Protocol

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

# Turns take seconds (model calls); store operations take milliseconds.
TURN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
FIRST_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)

# A label value outside what we can vouch for (a model name a provider reported, a label
# that is not a plain name) is reported as this, so a series count can never grow with input.
OTHER = "other"
MAX_LABEL_CHARS = 64
_LABEL_OK = re.compile(r"[A-Za-z0-9_.:/-]+")

HTTP_REQUESTS = Counter(
    "switchboard_http_requests", "HTTP requests answered by the shim.",
    ("dialect", "route", "method", "status"),
)
HTTP_DURATION = Histogram(
    "switchboard_http_request_duration_seconds",
    "Time from request to the end of the response (streams included).",
    ("dialect", "route"), buckets=HTTP_BUCKETS,
)
GRPC_CALLS = Counter(
    "switchboard_grpc_calls", "gRPC calls handled by the core.", ("method", "code"),
)
GRPC_DURATION = Histogram(
    "switchboard_grpc_call_duration_seconds", "gRPC call duration (streams included).",
    ("method",), buckets=HTTP_BUCKETS,
)
OPEN_STREAMS = Gauge(
    "switchboard_open_streams", "Server-streaming gRPC calls in progress.", ("method",),
)
LIVE_TURNS = Gauge("switchboard_live_turns", "Turns running in this process.")
TURNS = Counter(
    "switchboard_turns", "Finished turns by outcome.", ("agent", "provider", "status"),
)
TURN_DURATION = Histogram(
    "switchboard_turn_duration_seconds", "Turn duration, start to stored.",
    ("agent", "provider"), buckets=TURN_BUCKETS,
)
FIRST_TOKEN = Histogram(
    "switchboard_turn_first_token_seconds", "Time from turn start to the first text token.",
    ("agent", "provider"), buckets=FIRST_TOKEN_BUCKETS,
)
REFUSALS = Counter(
    "switchboard_refusals", "Requests refused by a rate limit or a budget.", ("reason",),
)
STORE_DURATION = Histogram(
    "switchboard_store_operation_duration_seconds", "Store operation latency.",
    ("operation", "outcome"), buckets=STORE_BUCKETS,
)
MODEL_TOKENS = Counter(
    "switchboard_model_tokens", "Model tokens billed.", ("model", "kind"),
)
MODEL_COST = Counter(
    "switchboard_model_cost_micros", "Model cost billed, in micro-dollars.", ("model",),
)
WEBHOOK_DELIVERIES = Counter(
    "switchboard_webhook_deliveries", "Webhook tool calls by outcome.", ("outcome",),
)
EVENT_WEBHOOK_ATTEMPTS = Counter(
    "switchboard_event_webhook_attempts",
    "Attempts to deliver an event to an organisation's webhook endpoint, by outcome.",
    ("outcome",),
)

REFUSAL_REASONS = frozenset({"rate_limited", "concurrency_limited", "budget_exceeded"})
WEBHOOK_OUTCOMES = frozenset({
    "ok", "not_configured", "invalid_arguments", "timeout", "unreachable", "http_error",
    "invalid_response",
})



class _TurnRegistry(Protocol):
    def all(self) -> Sized: ...


# Weak: a stopped core (tests start many per process) drops out of the count.
_live_sources: weakref.WeakSet[_TurnRegistry] = weakref.WeakSet()


def bounded(value: str, allowed: Callable[[str], bool] | None = None) -> str:
    """A label value that cannot blow up the series count: a plain short name (and, with
    `allowed`, one it accepts), or `other`."""
    if not value:
        return "none"
    if len(value) > MAX_LABEL_CHARS or not _LABEL_OK.fullmatch(value):
        return OTHER
    if allowed is not None and not allowed(value):
        return OTHER
    return value


def track_live_turns(registry: _TurnRegistry) -> None:
    """Count a live-turn registry's running turns in `switchboard_live_turns` (several
    cores in one process add up)."""
    _live_sources.add(registry)


LIVE_TURNS.set_function(lambda: float(sum(len(r.all()) for r in list(_live_sources))))


def count_refusal(reason: str) -> None:
    if reason in REFUSAL_REASONS:
        REFUSALS.labels(reason).inc()


def count_webhook(outcome: str) -> None:
    WEBHOOK_DELIVERIES.labels(outcome if outcome in WEBHOOK_OUTCOMES else OTHER).inc()


# delivered; retry (failed, tried again later); failed (given up after the retry window).
EVENT_WEBHOOK_OUTCOMES = frozenset({"delivered", "retry", "failed"})


def count_event_webhook(outcome: str) -> None:
    EVENT_WEBHOOK_ATTEMPTS.labels(outcome if outcome in EVENT_WEBHOOK_OUTCOMES
                                  else OTHER).inc()


__all__ = ["REGISTRY"]
