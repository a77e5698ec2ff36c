"""Token pricing from each organisation's model price table, in integer micro-dollars.

A price row gives, for one model, the input (prompt) and output (completion) price in
micro-dollars per one million tokens (`$2.50 / 1M` is 2,500,000). The cost of a usage is

    cost_micros = round_half_up((prompt * input + completion * output) / 1,000,000)

computed with integers only, so sums never drift; `cost_usd` is derived once, for display,
from the integer micros. Lookup: the exact model name, then the organisation's fallback
row `*`; a model with neither is *unpriced*: cost 0 (the tokens are still counted and
stored, and `switchboard prices set` can add the model later; past usage is not
re-priced). `switchboard prices set` manages the table.

A dated model name (`gpt-4o-mini-2024-07-18`, `gpt-4-0613`) also matches the price of
its undated name (`gpt-4o-mini`, `gpt-4`), as providers version their model names while
operators price the family. An unpriced turn is logged (once per organisation and model
per process) and counted (`Pricing.unpriced_turns`); `switchboard usage` lists them.
"""

from __future__ import annotations

import logging
import re
from decimal import Decimal, InvalidOperation

from core.events import Usage
from core.flows.store import ModelPrice, flow_store
from core.store.base import Store

log = logging.getLogger("switchboard.pricing")

# `-YYYY-MM-DD` (OpenAI since 2024) or `-MMDD` (gpt-4-0613) at the end of a model name.
_DATED = re.compile(r"(.+?)-(?:\d{4}-\d{2}-\d{2}|\d{4})")

MICROS_PER_USD = 1_000_000
TOKENS_PER_PRICE_UNIT = 1_000_000  # prices are per one million tokens
FALLBACK_MODEL = "*"
MAX_PRICE_MICROS_PER_MTOK = 1_000_000 * MICROS_PER_USD  # $1M per 1M tokens: a typo guard


def model_candidates(model: str) -> list[str]:
    """The names a model's price may be found under, most specific first."""
    names = [model] if model else []
    dated = _DATED.fullmatch(model)
    if dated:
        names.append(dated.group(1))
    return names


def cost_micros(price: ModelPrice, prompt_tokens: int, completion_tokens: int) -> int:
    """Integer micros, rounded half up (non-negative counts and prices)."""
    numerator = (prompt_tokens * price.input_micros_per_mtok
                 + completion_tokens * price.output_micros_per_mtok)
    return (numerator + TOKENS_PER_PRICE_UNIT // 2) // TOKENS_PER_PRICE_UNIT


def micros_to_usd(micros: int) -> float:
    """For display only (JSON `cost_usd`): the nearest double to micros / 10^6."""
    return float(Decimal(micros) / MICROS_PER_USD)


def usd_to_micros(text: str) -> int:
    """Parse a USD amount exactly ("2.50" -> 2500000); at most 6 decimal places."""
    try:
        amount = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"not a number: {text!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError("a price must be a non-negative number")
    micros = amount * MICROS_PER_USD
    if micros != micros.to_integral_value():
        raise ValueError("a price has at most 6 decimal places (whole micro-dollars)")
    value = int(micros)
    if value > MAX_PRICE_MICROS_PER_MTOK:
        raise ValueError("price is implausibly high (over $1,000,000 per 1M tokens)")
    return value


class Pricing:
    """Prices usages for an organisation; `price` is the TurnEngine's `pricer` hook."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.unpriced_turns = 0
        self._warned: set[tuple[str, str]] = set()

    async def lookup(self, org_id: str, model: str) -> ModelPrice | None:
        prices = flow_store(self._store)
        for name in (*model_candidates(model), FALLBACK_MODEL):
            found = await prices.get_model_price(org_id, name)
            if found is not None:
                return found
        return None

    async def price(self, org_id: str, usage: Usage) -> Usage:
        """`usage` with `cost_micros` from the table (0 when the model is unpriced)."""
        if not usage.prompt_tokens and not usage.completion_tokens:
            return usage
        found = await self.lookup(org_id, usage.model)
        if found is None:
            self.unpriced_turns += 1
            if (org_id, usage.model) not in self._warned:
                self._warned.add((org_id, usage.model))
                log.warning("model %r has no price in organisation %s: its turns cost 0 "
                            "(add one with `switchboard prices set`)", usage.model, org_id)
        cost = cost_micros(found, usage.prompt_tokens, usage.completion_tokens) if found else 0
        return Usage(usage.prompt_tokens, usage.completion_tokens, usage.model, cost)
