"""The demo organisation (`switchboard serve --demo`). Demo-only keys: never use them in
production; create real ones with `switchboard keys create`."""

from __future__ import annotations

import logging
from dataclasses import replace
from importlib import resources
from pathlib import Path

from core.agents.catalog import AgentCatalog
from core.agents.definition import load_agent_file
from core.clock import Clock, IdSource
from core.domain import KeyKind, Organisation, OrgSettings
from core.keys import Authenticator, hash_key
from core.store.base import Store

log = logging.getLogger("switchboard.demo")

DEMO_ORG_SLUG = "demo"
DEMO_WIDGET_KEY = "ab_live_demo_widget_key"
DEMO_SECRET_KEY = "sk_demo_secret_key"
# HS256 wants at least 32 bytes of secret (RFC 7518 §3.2; PyJWT warns below that).
DEMO_IDENTITY_SECRET = "demo_identity_secret_for_local_testing_only"


# Any local port: the demo page, a dev server, a test page.
DEMO_ORIGINS = ("http://localhost:*", "http://127.0.0.1:*")
_OLD_DEMO_ORIGINS = ("http://localhost:3000", "http://localhost:8080", "http://127.0.0.1:8080")


def demo_dir() -> Path:
    return Path(str(resources.files("core.demo")))


async def seed_demo(store: Store, auth: Authenticator, agents: AgentCatalog, ids: IdSource,
                    clock: Clock) -> str:
    """Create (or refresh) the demo organisation, its keys and agents; returns its id."""
    org = await store.get_org_by_slug(DEMO_ORG_SLUG)
    if org is None:
        org = Organisation(
            id=ids.uuid(), slug=DEMO_ORG_SLUG, name="Acme Analytics (demo)",
            settings=OrgSettings(
                allowed_origins=DEMO_ORIGINS,
                identity_secret=DEMO_IDENTITY_SECRET,
            ),
            created_at=clock.now(),
        )
        await store.create_org(org)
        log.info("created demo organisation %s", org.id)
    elif org.settings.allowed_origins == _OLD_DEMO_ORIGINS:
        # A database seeded by an earlier version, list untouched: move it to the patterns.
        await store.update_org_settings(
            org.id, replace(org.settings, allowed_origins=DEMO_ORIGINS))
    for raw, kind in ((DEMO_WIDGET_KEY, KeyKind.PUBLISHABLE), (DEMO_SECRET_KEY, KeyKind.SECRET)):
        if await store.find_key(hash_key(raw)) is None:
            await auth.create_key(org.id, kind, ids, name=f"demo {kind}", raw=raw)
    for path in sorted((demo_dir() / "agents").glob("*.yaml")):
        definition = load_agent_file(path)
        await agents.apply(org.id, definition, ids, clock)
    return org.id
