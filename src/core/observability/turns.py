"""Turn observability: the model-call span, and the metrics and log line of a finished
turn (duration, time to first token, tokens and cost by model)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from core.events import Usage
from core.observability import metrics, tracing
from core.observability.requests import current_request_id

if TYPE_CHECKING:
    from core.domain import AgentRecord
    from core.engine.live import LiveTurn
    from core.providers.base import GenerationRequest, ModelProvider, ProviderEvent

log = logging.getLogger("switchboard.turns")
MAX_DIALECT_CHARS = 32


class ObservedProvider:
    """A provider whose `generate` runs inside a `model.generate` span."""

    def __init__(self, inner: ModelProvider, agent: AgentRecord) -> None:
        self._inner = inner
        self._agent = agent

    @property
    def model_name(self) -> str:
        return self._inner.model_name

    async def generate(self, request: GenerationRequest) -> AsyncIterator[ProviderEvent]:
        span = tracing.start_span("model.generate", {
            "gen_ai.request.model": self._inner.model_name,
            "switchboard.provider": self._agent.definition.provider.kind,
        })
        try:
            async for item in self._inner.generate(request):
                yield item
        finally:
            if span is not None:
                span.end()


def observe_provider(provider: ModelProvider, agent: AgentRecord) -> ModelProvider:
    return ObservedProvider(provider, agent) if tracing.enabled() else provider


def turn_finished(live: LiveTurn, agent: AgentRecord, dialect: str, status: str,
                  billed: Usage) -> None:
    """Record a stored turn. `billed` is what this segment added to the ledger (a resumed
    turn's earlier segments were counted when they ended)."""
    elapsed = time.monotonic() - live.started_monotonic
    agent_label = metrics.bounded(agent.slug)
    provider = metrics.bounded(agent.definition.provider.kind)
    metrics.TURNS.labels(agent_label, provider, metrics.bounded(status)).inc()
    metrics.TURN_DURATION.labels(agent_label, provider).observe(elapsed)
    first_token_ms: float | None = None
    if live.first_token_monotonic is not None:
        first_token = live.first_token_monotonic - live.started_monotonic
        metrics.FIRST_TOKEN.labels(agent_label, provider).observe(first_token)
        first_token_ms = round(first_token * 1000, 1)
    model = metrics.bounded(billed.model)
    if billed.prompt_tokens > 0:
        metrics.MODEL_TOKENS.labels(model, "prompt").inc(billed.prompt_tokens)
    if billed.completion_tokens > 0:
        metrics.MODEL_TOKENS.labels(model, "completion").inc(billed.completion_tokens)
    if billed.cost_micros > 0:
        metrics.MODEL_COST.labels(model).inc(billed.cost_micros)
    # Ids and names only: never the message, the reply or a key.
    log.info("turn %s", status, extra={
        # The turn's task copied the request's context: this is the request that started it.
        "request_id": current_request_id(), "conversation_id": live.conversation_id,
        "turn_id": live.turn_id,
        "org": live.org_id, "agent": agent.slug, "provider": provider,
        "model": billed.model, "dialect": dialect[:MAX_DIALECT_CHARS], "status": status,
        "duration_ms": round(elapsed * 1000, 1), "first_token_ms": first_token_ms,
        "prompt_tokens": billed.prompt_tokens, "completion_tokens": billed.completion_tokens,
        "trace_id": tracing.current_trace_id(),
    })
