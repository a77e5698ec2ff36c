"""Agents as the core uses them: stored documents parsed, and knowledge bases resolved.

The store keeps an agent's definition as the portable document that was applied: its
knowledge base is a path relative to the knowledge root (or `package:NAME` for one that
ships with Switchboard), never a path on the machine that applied it. This module turns
records into `AgentRecord`s against this core's knowledge root, so the same database
works on any host that has the knowledge folders under its root.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from core.agents.definition import AgentDefinition, AgentDefinitionError, parse_agent
from core.clock import Clock, IdSource
from core.domain import AgentRecord
from core.store.base import Store, StoredAgent

PACKAGE_PREFIX = "package:"
KNOWLEDGE_ROOT_ENV = "SWITCHBOARD_KNOWLEDGE_ROOT"


def default_knowledge_root() -> Path:
    return Path(os.environ.get(KNOWLEDGE_ROOT_ENV) or ".").resolve()


def _package_root() -> Path:
    """Where knowledge that ships with Switchboard lives (the demo help center)."""
    return Path(str(resources.files("core.demo"))).resolve()


def portable_reference(folder: str, knowledge_root: Path) -> str:
    """How a resolved knowledge-base folder is stored; AgentDefinitionError for a folder
    outside the knowledge root (it could not be found on another host)."""
    path = Path(folder).resolve()
    root = knowledge_root.resolve()
    if path.is_relative_to(root):
        return path.relative_to(root).as_posix() or "."
    package = _package_root()
    if path.is_relative_to(package):
        return PACKAGE_PREFIX + path.relative_to(package).as_posix()
    raise AgentDefinitionError({
        "knowledge_base": f"folder {path} is outside the knowledge root {root}: move it "
                          f"under the root or set --knowledge-root / ${KNOWLEDGE_ROOT_ENV}",
    })


def resolve_reference(reference: str, knowledge_root: Path) -> Path:
    if reference.startswith(PACKAGE_PREFIX):
        return _package_root() / reference.removeprefix(PACKAGE_PREFIX)
    return knowledge_root / reference


def stored_document(definition: AgentDefinition, knowledge_root: Path) -> dict[str, Any]:
    """The portable document for a parsed definition (the input to the store)."""
    document = {**definition.raw, "slug": definition.slug}
    if definition.knowledge_base:
        document["knowledge_base"] = {
            "path": portable_reference(definition.knowledge_base, knowledge_root),
            "url": definition.knowledge_base_url,
        }
    return document


@lru_cache(maxsize=1024)
def _parse(document_json: str, knowledge_root: str) -> AgentDefinition:
    """Definitions are read on every turn; parsing one costs more than the query, and a
    stored document never changes under the same text."""
    data = json.loads(document_json)
    kb = data.get("knowledge_base")
    if isinstance(kb, dict) and isinstance(kb.get("path"), str):
        kb = {**kb, "path": str(resolve_reference(kb["path"], Path(knowledge_root)))}
        data = {**data, "knowledge_base": kb}
    return parse_agent(data, check_folder=False)


class AgentCatalog:
    def __init__(self, store: Store, knowledge_root: Path | None = None) -> None:
        self.store = store
        self.knowledge_root = (knowledge_root or default_knowledge_root()).resolve()

    def record(self, stored: StoredAgent) -> AgentRecord:
        document = json.dumps(stored.definition, sort_keys=True, separators=(",", ":"))
        return AgentRecord(
            id=stored.id, org_id=stored.org_id, slug=stored.slug, name=stored.name,
            definition=_parse(document, str(self.knowledge_root)), active=stored.active,
            created_at=stored.created_at,
        )

    async def get(self, org_id: str, id_or_slug: str) -> AgentRecord | None:
        stored = await self.store.get_agent(org_id, id_or_slug)
        return self.record(stored) if stored else None

    async def active(self, org_id: str) -> AgentRecord | None:
        stored = await self.store.get_active_agent(org_id)
        return self.record(stored) if stored else None

    async def list(self, org_id: str) -> list[AgentRecord]:
        return [self.record(a) for a in await self.store.list_agents(org_id)]

    async def apply(self, org_id: str, definition: AgentDefinition, ids: IdSource,
                    clock: Clock) -> AgentRecord:
        """Create or update (by slug) an agent; AgentDefinitionError if its knowledge base
        cannot be stored portably."""
        now = clock.now()
        stored = await self.store.upsert_agent(StoredAgent(
            id=ids.uuid(), org_id=org_id, slug=definition.slug, name=definition.name,
            definition=stored_document(definition, self.knowledge_root),
            active=definition.active, created_at=now, updated_at=now,
        ))
        return self.record(stored)
