"""Builds the model provider an agent definition names."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from core import http_pool
from core.agents.definition import AgentDefinition
from core.knowledge import KnowledgeBase, load_knowledge_base
from core.providers.base import ModelProvider, ProviderError
from core.providers.scripted import ScriptedProvider

# Providers are cheap to build, but the kb index is not: keep one provider per definition.
# Keyed by agent, holding the definition it was built from: an equal definition (a dict
# comparison, short-circuited when the store hands out the same object) reuses it,
# without serialising the whole definition on every turn.
_cache: dict[str, tuple[dict[str, Any], ModelProvider]] = {}


def knowledge_base_for(agent: AgentDefinition) -> KnowledgeBase | None:
    """The agent's knowledge base; ProviderError (a clear, logged turn error) when its
    folder is gone (moved, or this host's knowledge root lacks it)."""
    if not agent.knowledge_base:
        return None
    try:
        return load_knowledge_base(Path(agent.knowledge_base), agent.knowledge_base_url)
    except FileNotFoundError:
        raise ProviderError(
            f"Agent '{agent.slug}': knowledge base folder "
            f"'{Path(agent.knowledge_base).name}' was not found under the knowledge root."
        ) from None


def build_provider(agent: AgentDefinition, agent_id: str = "") -> ModelProvider:
    key = agent_id or agent.slug
    cached = _cache.get(key)
    if cached is not None and cached[0] == agent.raw:
        return cached[1]
    provider = _build(agent)
    if len(_cache) > 256:
        _cache.clear()
    _cache[key] = (agent.raw, provider)
    return provider


def _build(agent: AgentDefinition) -> ModelProvider:
    kind = agent.provider.kind
    options: dict[str, Any] = agent.provider.options
    if kind == "scripted":
        return ScriptedProvider(options)
    if kind == "kb":
        from core.providers.kb import DEFAULT_ANSWER_FLOOR, KbProvider

        kb = knowledge_base_for(agent)
        assert kb is not None, "kb provider requires a knowledge base"
        return KbProvider(
            kb,
            threshold=agent.confidence_threshold,
            word_delay_s=float(options.get("word_delay_ms", 0)) / 1000.0,
            answer_floor=float(options.get("answer_floor", DEFAULT_ANSWER_FLOOR)),
        )
    if kind == "openai":
        from core.providers.openai import OpenAIConfig, OpenAIProvider

        # The process's pooled session: connections kept alive between model steps.
        return OpenAIProvider(OpenAIConfig.from_options(options, os.environ),
                              session=http_pool.session)
    raise ValueError(f"unknown provider kind {kind!r}")
