"""Agent definition files (YAML): parsing and validation with errors named by field.

A definition names the agent, its model provider, its knowledge base, its tools, its
routing rules and its flows. Sections owned by other modules (routing, flows, webhook
tools) are validated here for shape and kept as plain data; their owners interpret them.
See docs/agents.md for the schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROVIDER_KINDS = ("kb", "openai", "scripted")
BUILTIN_TOOLS = ("search_knowledge", "create_ticket", "highlight")
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_SLUG_LENGTH = 64


class AgentDefinitionError(ValueError):
    """A definition is invalid; `errors` maps a field path to what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        lines = "; ".join(f"{path}: {msg}" for path, msg in errors.items())
        super().__init__(f"invalid agent definition: {lines}")


def slugify(name: str) -> str:
    """'Customer Support' -> 'customer-support' (the slug API's documented derivation)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:MAX_SLUG_LENGTH].strip("-") or "agent"


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    kind: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AgentDefinition:
    name: str
    slug: str
    provider: ProviderConfig
    description: str = ""
    instructions: str = ""
    knowledge_base: str = ""  # absolute folder path, resolved against the file's folder
    knowledge_base_url: str = ""
    tools: tuple[dict[str, Any], ...] = ()
    routing: tuple[dict[str, Any], ...] = ()
    flows: dict[str, Any] = field(default_factory=dict)
    handoffs: tuple[dict[str, Any], ...] = ()
    confidence_threshold: float = 0.5
    active: bool = False
    raw: dict[str, Any] = field(default_factory=dict)

    def tool_names(self) -> list[str]:
        return [str(t.get("name", "")) for t in self.tools]


def _as_tool(index: int, item: Any, errors: dict[str, str]) -> dict[str, Any] | None:
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict):
        errors[f"tools[{index}]"] = "must be a tool name or a mapping"
        return None
    name = item.get("name")
    if not isinstance(name, str) or not name:
        errors[f"tools[{index}].name"] = "is required"
        return None
    kind = item.get("kind", "builtin" if name in BUILTIN_TOOLS else "")
    if kind == "builtin" and name not in BUILTIN_TOOLS:
        errors[f"tools[{index}].name"] = f"unknown built-in tool; one of {', '.join(BUILTIN_TOOLS)}"
    elif kind == "webhook":
        url = item.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            errors[f"tools[{index}].url"] = "must be an http(s) URL"
    elif kind not in ("builtin", "webhook", "client"):
        errors[f"tools[{index}].kind"] = "must be builtin, webhook or client"
    return {**item, "kind": kind}


def parse_agent(data: Any, base_dir: Path | None = None) -> AgentDefinition:
    """Validate a parsed YAML mapping; raise AgentDefinitionError listing every bad field."""
    errors: dict[str, str] = {}
    if not isinstance(data, dict):
        raise AgentDefinitionError({"": "an agent definition must be a mapping"})
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        errors["name"] = "is required"
        name = ""
    slug = data.get("slug") or slugify(name or "agent")
    if not isinstance(slug, str) or not _SLUG.match(slug) or len(slug) > MAX_SLUG_LENGTH:
        errors["slug"] = "must be lowercase letters, digits and single hyphens (at most 64)"
    provider_raw = data.get("provider", "kb")
    if isinstance(provider_raw, str):
        provider_raw = {"kind": provider_raw}
    if not isinstance(provider_raw, dict):
        errors["provider"] = "must be a provider kind or a mapping with `kind`"
        provider_raw = {"kind": "kb"}
    kind = provider_raw.get("kind", "kb")
    if kind not in PROVIDER_KINDS:
        errors["provider.kind"] = f"must be one of {', '.join(PROVIDER_KINDS)}"
    options = {k: v for k, v in provider_raw.items() if k != "kind"}
    kb = data.get("knowledge_base", "")
    kb_url = ""
    if isinstance(kb, dict):
        kb_url = str(kb.get("url", ""))
        kb = kb.get("path", "")
    if not isinstance(kb, str):
        errors["knowledge_base"] = "must be a folder path"
        kb = ""
    if kb:
        kb_path = Path(kb)
        if not kb_path.is_absolute() and base_dir is not None:
            kb_path = base_dir / kb_path
        if not kb_path.is_dir():
            errors["knowledge_base"] = f"folder not found: {kb}"
        kb = str(kb_path.resolve())
    if kind == "kb" and not kb and "knowledge_base" not in errors:
        errors["knowledge_base"] = "is required for the kb provider"
    tools_raw = data.get("tools", []) or []
    tools: list[dict[str, Any]] = []
    if not isinstance(tools_raw, list):
        errors["tools"] = "must be a list"
    else:
        for i, item in enumerate(tools_raw):
            tool = _as_tool(i, item, errors)
            if tool is not None:
                tools.append(tool)
    routing = data.get("routing", []) or []
    if not isinstance(routing, list) or not all(isinstance(r, dict) for r in routing):
        errors["routing"] = "must be a list of rules"
        routing = []
    handoffs = data.get("handoffs", []) or []
    if not isinstance(handoffs, list) or not all(isinstance(h, dict) for h in handoffs):
        errors["handoffs"] = "must be a list of mappings"
        handoffs = []
    flows = data.get("flows", {}) or {}
    if not isinstance(flows, dict):
        errors["flows"] = "must be a mapping of intent name to flow"
        flows = {}
    threshold = data.get("confidence_threshold", 0.5)
    if not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        errors["confidence_threshold"] = "must be a number between 0 and 1"
        threshold = 0.5
    for key in ("description", "instructions"):
        if not isinstance(data.get(key, ""), str):
            errors[key] = "must be a string"
    if errors:
        raise AgentDefinitionError(errors)
    return AgentDefinition(
        name=name,
        slug=slug,
        provider=ProviderConfig(kind=kind, options=options),
        description=data.get("description", "") or "",
        instructions=data.get("instructions", "") or "",
        knowledge_base=kb,
        knowledge_base_url=kb_url,
        tools=tuple(tools),
        routing=tuple(routing),
        flows=flows,
        handoffs=tuple(handoffs),
        confidence_threshold=float(threshold),
        active=bool(data.get("active", False)),
        raw=data,
    )


def load_agent_file(path: Path) -> AgentDefinition:
    """Read and validate one YAML agent file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise AgentDefinitionError({"": f"not valid YAML: {exc}"}) from exc
    return parse_agent(data, base_dir=path.parent)
