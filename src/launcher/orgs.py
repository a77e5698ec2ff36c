"""`switchboard org show|set`: an organisation's settings (rate limits, budgets, origins,
identity verification). Changes apply to the next request; nothing needs a restart."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any

from core.config import CoreConfig
from core.domain import OrgSettings
from core.store.factory import open_store
from launcher.options import add_database_option

_LIMITS = {
    "rps": ("rate_limit", "rps", float),
    "burst": ("rate_limit", "burst", int),
    "max_streams": ("rate_limit", "max_streams", int),
    "daily_budget_micros": ("budget", "daily_micros", int),
    "monthly_budget_micros": ("budget", "monthly_micros", int),
    "user_daily_budget_micros": ("budget", "user_daily_micros", int),
    "user_monthly_budget_micros": ("budget", "user_monthly_micros", int),
}


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    org = sub.add_parser("org", help="show or change an organisation's settings")
    org_sub = org.add_subparsers(dest="org_command", required=True)
    for name, help_text in (("show", "print the settings"), ("set", "change settings")):
        p = org_sub.add_parser(name, help=help_text)
        p.add_argument("--org", default="demo", help="organisation slug")
        add_database_option(p)
        if name == "set":
            for flag, (_, _, kind) in _LIMITS.items():
                p.add_argument(f"--{flag.replace('_', '-')}", type=kind, dest=flag)
            p.add_argument("--allowed-origins", help="comma-separated origins ('' for none)")
            p.add_argument("--require-identity", action=argparse.BooleanOptionalAction)
            p.add_argument("--allow-anonymous", action=argparse.BooleanOptionalAction)
            p.add_argument("--identity-secret")


def _public(settings: OrgSettings) -> dict[str, Any]:
    data = settings.to_json()
    data["identity_secret"] = "(set)" if settings.identity_secret else ""
    return data


def _apply(settings: OrgSettings, ns: argparse.Namespace) -> OrgSettings:
    extra = {k: dict(v) if isinstance(v, dict) else v for k, v in settings.extra.items()}
    for flag, (section, key, _) in _LIMITS.items():
        value = getattr(ns, flag)
        if value is not None:
            if value < 0:
                raise ValueError(f"--{flag.replace('_', '-')} must be >= 0")
            extra.setdefault(section, {})[key] = value
    changes: dict[str, Any] = {"extra": extra}
    if ns.allowed_origins is not None:
        changes["allowed_origins"] = tuple(o.strip() for o in ns.allowed_origins.split(",")
                                           if o.strip())
    for name in ("require_identity", "allow_anonymous", "identity_secret"):
        if getattr(ns, name) is not None:
            changes[name] = getattr(ns, name)
    return replace(settings, **changes)


async def run(ns: argparse.Namespace, config: CoreConfig) -> int:
    store = open_store(config.database)
    await store.open()
    try:
        org = await store.get_org_by_slug(ns.org)
        if org is None:
            print(f"error: organisation {ns.org!r} not found", file=sys.stderr)
            return 2
        settings = org.settings
        if ns.org_command == "set":
            try:
                settings = _apply(settings, ns)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            await store.update_org_settings(org.id, settings)
        print(json.dumps(_public(settings), indent=2, sort_keys=True))
        return 0
    finally:
        await store.close()
