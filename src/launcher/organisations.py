"""`switchboard orgs create|list`: organisations in the store (`switchboard org` shows and
changes one organisation's settings)."""

from __future__ import annotations

import argparse
import re
import sys

from core.clock import RandomIds, SystemClock
from core.config import CoreConfig
from core.domain import Organisation, OrgSettings
from core.store.factory import open_store

# Slugs appear in URLs and CLI flags: lowercase words joined by single hyphens.
MAX_SLUG_CHARS = 63
_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def valid_slug(slug: str) -> bool:
    return len(slug) <= MAX_SLUG_CHARS and bool(_SLUG.fullmatch(slug))


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    orgs = sub.add_parser("orgs", help="create and list organisations")
    orgs_sub = orgs.add_subparsers(dest="orgs_command", required=True)
    create = orgs_sub.add_parser("create", help="create an organisation")
    create.add_argument("slug", help=f"short name used by --org (lowercase letters, digits "
                                     f"and hyphens, at most {MAX_SLUG_CHARS})")
    create.add_argument("--name", default="", help="display name (default: the slug)")
    list_ = orgs_sub.add_parser("list", help="list organisations")
    for p in (create, list_):
        p.add_argument("--database", help="SQLite file (default .switchboard/switchboard.db)")


async def run(ns: argparse.Namespace, config: CoreConfig) -> int:
    if ns.orgs_command == "create" and not valid_slug(ns.slug):
        print(f"error: {ns.slug!r} is not a valid slug (lowercase letters, digits and single "
              f"hyphens, at most {MAX_SLUG_CHARS} characters)", file=sys.stderr)
        return 2
    store = open_store(config.database)
    await store.open()
    try:
        if ns.orgs_command == "create":
            if await store.get_org_by_slug(ns.slug) is not None:
                print(f"error: organisation {ns.slug!r} already exists", file=sys.stderr)
                return 2
            ids = RandomIds()
            org = Organisation(ids.uuid(), ns.slug, ns.name or ns.slug, OrgSettings(),
                               SystemClock().now())
            await store.create_org(org)
            print(f"created organisation {org.slug} ({org.id})")
            return 0
        for org in await store.list_orgs():
            print(f"{org.slug}\t{org.id}\t{org.name}")
        return 0
    finally:
        await store.close()
