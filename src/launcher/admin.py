"""Administrative commands that work on the store directly (keys, agents)."""

from __future__ import annotations

import argparse
import sys

from core.agents.catalog import AgentCatalog
from core.agents.definition import AgentDefinition, AgentDefinitionError, load_agent_file
from core.clock import IdSource, RandomIds, SystemClock
from core.config import CoreConfig
from core.domain import ApiKey, KeyKind, Organisation, OrgSettings
from core.keys import DEFAULT_ROTATION_OVERLAP_S, KEY_CACHE_TTL_S, Authenticator
from core.limits import MAX_OPERATOR_NAME_CHARS
from core.store.base import Store
from core.store.factory import open_store


async def run(ns: argparse.Namespace, config: CoreConfig) -> int:
    if ns.command == "agents" and ns.agents_command == "apply" and ns.check:
        try:
            definition = load_agent_file(ns.file)
        except (AgentDefinitionError, OSError) as exc:
            print(_describe(exc), file=sys.stderr)
            return 2
        print(f"ok: {definition.slug} ({definition.provider.kind}): {_summary(definition)}")
        return 0
    store = open_store(config.database)
    await store.open()
    clock, ids = SystemClock(), RandomIds()
    try:
        if ns.command == "operators":
            return await _operator_tokens(ns, store, clock, ids)
        if ns.command == "keys" and ns.keys_command in ("revoke", "rotate"):
            return await _key_lifecycle(ns, Authenticator(store, clock), ids)
        org = await store.get_org_by_slug(ns.org)
        if ns.command == "keys" and ns.keys_command == "list":
            if org is None:
                print(f"error: organisation {ns.org!r} not found", file=sys.stderr)
                return 2
            print("id\tkind\tprefix\tname\tcreated\tstatus")
            for key in await store.list_keys(org.id):
                print(f"{key.id}\t{key.kind}\t{key.prefix}\t{key.name}\t"
                      f"{key.created_at.isoformat(timespec='seconds')}\t{_status(key, clock)}")
            return 0
        if ns.command == "keys":
            if org is None:
                org = Organisation(ids.uuid(), ns.org, ns.org, OrgSettings(), clock.now())
                await store.create_org(org)
            key, raw = await Authenticator(store, clock).create_key(org.id, ns.kind, ids,
                                                                   name=ns.name)
            print(f"created {key.kind} key {key.id} for organisation {org.slug}")
            print(raw)
            print("(shown once: store it now)", file=sys.stderr)
            return 0
        if org is None:
            print(f"error: organisation {ns.org!r} not found", file=sys.stderr)
            return 2
        agents = AgentCatalog(store, getattr(ns, "knowledge_root", None) or config.knowledge_root)
        if ns.agents_command == "list":
            for agent in await agents.list(org.id):
                active = " (active)" if agent.active else ""
                print(f"{agent.slug}\t{agent.id}\t{agent.definition.provider.kind}{active}")
            return 0
        try:
            definition = load_agent_file(ns.file)
            record = await agents.apply(org.id, definition, ids, clock)
        except (AgentDefinitionError, OSError) as exc:
            print(_describe(exc), file=sys.stderr)
            return 2
        print(f"applied agent {record.slug} ({record.id})")
        # Agents are applied one file at a time, so a missing target is a warning: the
        # router skips it until that agent exists.
        for i, handoff in enumerate(definition.handoffs):
            if await agents.get(org.id, str(handoff["to"])) is None:
                print(f"warning: handoffs[{i}].to: no agent {handoff['to']!r} in "
                      f"organisation {org.slug} yet", file=sys.stderr)
        return 0
    finally:
        await store.close()


def _status(key: ApiKey, clock: SystemClock) -> str:
    if key.revoked:
        return "revoked"
    if key.expires_at is not None:
        if clock.now() >= key.expires_at:
            return "expired"
        return f"expires {key.expires_at.isoformat(timespec='seconds')}"
    return "active"


async def _key_lifecycle(ns: argparse.Namespace, auth: Authenticator, ids: RandomIds) -> int:
    if ns.keys_command == "revoke":
        if not await auth.revoke(ns.key_id):
            print(f"error: no active key {ns.key_id!r}", file=sys.stderr)
            return 2
        print(f"revoked key {ns.key_id} (refused within {KEY_CACHE_TTL_S:g} s everywhere)")
        return 0
    overlap = DEFAULT_ROTATION_OVERLAP_S if ns.overlap is None else ns.overlap
    if overlap < 0:
        print("error: --overlap must be >= 0", file=sys.stderr)
        return 2
    try:
        key, raw = await auth.rotate(ns.key_id, ids, overlap)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"created {key.kind} key {key.id} replacing {ns.key_id} "
          f"(the old key works for {overlap:g} more seconds)")
    print(raw)
    print("(shown once: store it now)", file=sys.stderr)
    return 0


def _summary(definition: AgentDefinition) -> str:
    return ", ".join(f"{name}: {count}" for name, count in (
        ("tools", len(definition.tools)), ("routing rules", len(definition.routing)),
        ("handoffs", len(definition.handoffs)), ("flows", len(definition.flows)),
    ))


def _describe(exc: Exception) -> str:
    if isinstance(exc, AgentDefinitionError):
        return "invalid agent file:\n" + "\n".join(
            f"  {path or '(root)'}: {msg}" for path, msg in exc.errors.items()
        )
    return f"error: {exc}"


async def _operator_tokens(ns: argparse.Namespace, store: Store, clock: SystemClock,
                           ids: IdSource) -> int:
    """`switchboard operators token create|list|revoke`: operator tokens are keys of kind
    `operator` (hashed like every key), named after the operator."""
    auth = Authenticator(store, clock)
    if ns.token_command == "revoke":
        key = await store.get_key(ns.key_id)
        if key is None or key.kind != KeyKind.OPERATOR or not await auth.revoke(ns.key_id):
            print(f"error: no active operator token {ns.key_id!r}", file=sys.stderr)
            return 2
        print(f"revoked operator token {ns.key_id}")
        return 0
    org = await store.get_org_by_slug(ns.org)
    if org is None:
        print(f"error: organisation {ns.org!r} not found", file=sys.stderr)
        return 2
    if ns.token_command == "list":
        print("id\tprefix\tname\tcreated\tstatus")
        for key in await store.list_keys(org.id):
            if key.kind == KeyKind.OPERATOR:
                print(f"{key.id}\t{key.prefix}\t{key.name}\t"
                      f"{key.created_at.isoformat(timespec='seconds')}\t{_status(key, clock)}")
        return 0
    name = " ".join(ns.name.split())
    if not name or len(name) > MAX_OPERATOR_NAME_CHARS:
        print(f"error: --name must be 1 to {MAX_OPERATOR_NAME_CHARS} characters",
              file=sys.stderr)
        return 2
    key, raw = await auth.create_key(org.id, KeyKind.OPERATOR, ids, name=name)
    print(f"created operator token {key.id} for {name} in organisation {org.slug}")
    print(raw)
    print("(shown once: store it now)", file=sys.stderr)
    return 0
