"""One model provider per agent definition, found without serialising the definition."""

from __future__ import annotations

from typing import Any

from core.agents.definition import parse_agent
from core.providers.registry import build_provider

SOURCE: dict[str, Any] = {"name": "cached", "slug": "cached",
                          "provider": {"kind": "scripted", "reply": "ok"},
                          "tools": [{"name": "t", "kind": "client", "description": "d",
                                     "parameters": {"type": "object"}}]}


def test_an_equal_definition_reuses_the_provider() -> None:
    first = build_provider(parse_agent(SOURCE), "agent-cache-1")
    assert build_provider(parse_agent(dict(SOURCE)), "agent-cache-1") is first
    changed = {**SOURCE, "provider": {"kind": "scripted", "reply": "other"}}
    second = build_provider(parse_agent(changed), "agent-cache-1")
    assert second is not first
    assert build_provider(parse_agent(changed), "agent-cache-1") is second
    assert build_provider(parse_agent(SOURCE), "agent-cache-2") is not first


class _NoRepr(dict[str, Any]):
    """A definition value that refuses to be turned into text."""

    def __repr__(self) -> str:
        raise AssertionError("the provider cache serialised the definition")


def test_the_cache_key_does_not_serialise_the_definition() -> None:
    definition = parse_agent(SOURCE)
    definition.raw["tools"] = [_NoRepr(definition.raw["tools"][0])]
    provider = build_provider(definition, "agent-cache-3")
    assert build_provider(definition, "agent-cache-3") is provider
