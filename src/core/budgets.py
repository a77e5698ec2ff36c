"""Spend budgets and the usage ledger.

Budgets are configured per organisation in `OrgSettings.extra["budget"]`, in integer
micros (1 USD = 1,000,000 micros):
`{"daily_micros", "monthly_micros", "user_daily_micros", "user_monthly_micros"}`; a
missing or zero limit means unlimited. Days and months are UTC calendar periods.

Before a turn starts, the spend so far in each period plus an estimate of the turn's cost
must stay within the limit. The estimate prices `estimate_tokens(message + behavior
context + history) + ESTIMATE_CONTEXT_TOKENS` prompt tokens and
`ESTIMATE_COMPLETION_TOKENS` completion tokens at the organisation's budget model
(`budget.estimate_model`, default the price table's fallback). A refusal is
RESOURCE_EXHAUSTED with reason `budget_exceeded` (HTTP 429, `Retry-After` = seconds until
the period resets): like a rate limit, it clears with time, which is what clients already
retry on; we do not use 402, which most HTTP clients treat as final. Nothing is written
and no model is called. Concurrent turns are checked against spend already recorded, so
a burst can overshoot by at most the turns in flight (documented in docs/reliability.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from core.clock import Clock
from core.domain import Organisation, TurnRequest
from core.errors import Code, Reason, SwitchboardError
from core.events import Usage
from core.providers.base import estimate_tokens

ESTIMATE_CONTEXT_TOKENS = 500  # instructions, retrieved passages, prior turns
ESTIMATE_COMPLETION_TOKENS = 500

Pricer = Callable[[str, Usage], Awaitable[Usage]]


@dataclass(frozen=True, slots=True)
class Budget:
    daily_micros: int = 0
    monthly_micros: int = 0
    user_daily_micros: int = 0
    user_monthly_micros: int = 0
    estimate_model: str = ""

    @classmethod
    def from_settings(cls, extra: dict[str, Any]) -> Budget:
        raw = extra.get("budget") or {}
        return cls(
            daily_micros=int(raw.get("daily_micros", 0)),
            monthly_micros=int(raw.get("monthly_micros", 0)),
            user_daily_micros=int(raw.get("user_daily_micros", 0)),
            user_monthly_micros=int(raw.get("user_monthly_micros", 0)),
            estimate_model=str(raw.get("estimate_model", "")),
        )

    @property
    def unlimited(self) -> bool:
        return not (self.daily_micros or self.monthly_micros or self.user_daily_micros
                    or self.user_monthly_micros)


def period_starts(now: datetime) -> tuple[datetime, datetime, datetime, datetime]:
    """(day start, next day start, month start, next month start), UTC."""
    now = now.astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    next_month = (month + timedelta(days=32)).replace(day=1)
    return day, day + timedelta(days=1), month, next_month


def estimate_usage(request: TurnRequest, model: str) -> Usage:
    text = request.message + request.behavior_context + "".join(
        h.content for h in request.history
    )
    return Usage(estimate_tokens(text) + ESTIMATE_CONTEXT_TOKENS, ESTIMATE_COMPLETION_TOKENS,
                 model)


class Budgets:
    def __init__(self, store: Any, clock: Clock, price: Pricer) -> None:
        self._store = store
        self._clock = clock
        self._price = price

    async def check(self, org: Organisation, request: TurnRequest, model: str = "",
                    user: str = "") -> None:
        """`user` is whom per-user budgets charge (core.ratelimit.budget_user); it
        defaults to the request's user id."""
        budget = Budget.from_settings(org.settings.extra)
        if budget.unlimited:
            return
        now = self._clock.now()
        day, next_day, month, next_month = period_starts(now)
        estimate = (await self._price(org.id, estimate_usage(
            request, model or budget.estimate_model))).cost_micros
        user = user or request.user_id or "anonymous"
        checks = [
            (budget.daily_micros, day, next_day, "", "daily"),
            (budget.monthly_micros, month, next_month, "", "monthly"),
            (budget.user_daily_micros, day, next_day, user, "daily per-user"),
            (budget.user_monthly_micros, month, next_month, user, "monthly per-user"),
        ]
        for limit, start, reset, user_id, label in checks:
            if not limit:
                continue
            spent = await self._store.sum_spend(org.id, start, user_id)
            if spent + estimate > limit:
                raise SwitchboardError(
                    Code.RESOURCE_EXHAUSTED, Reason.BUDGET_EXCEEDED,
                    f"The {label} spend limit is reached; it resets at "
                    f"{reset.strftime('%Y-%m-%dT%H:%M:%SZ')}.",
                    {"period": label, "limit_micros": str(limit), "spent_micros": str(spent)},
                    retry_after_s=(reset - now).total_seconds(),
                )
