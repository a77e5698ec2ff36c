"""`switchboard org show|set`: an organisation's settings (rate limits, budgets, origins,
identity verification). Changes apply to the next request; nothing needs a restart."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.config import CoreConfig
from core.domain import OrgSettings
from core.engine.identity import MIN_IDENTITY_SECRET_BYTES
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


_HELP = {
    "rps": "requests per second each key may make (token bucket refill rate)",
    "burst": "requests a key may make at once before --rps applies",
    "max_streams": "streams a key may hold open at once",
    "daily_budget_micros": "organisation spend per UTC day, micro-dollars (0: no limit)",
    "monthly_budget_micros": "organisation spend per UTC month, micro-dollars (0: no limit)",
    "user_daily_budget_micros": "spend per end user per UTC day, micro-dollars (0: no limit)",
    "user_monthly_budget_micros": "spend per end user per UTC month, micro-dollars "
                                  "(0: no limit)",
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
                p.add_argument(f"--{flag.replace('_', '-')}", type=kind, dest=flag,
                               help=_HELP[flag])
            p.add_argument("--allowed-origins", help="comma-separated origins ('' for none); "
                           "replaces the list")
            p.add_argument("--add-origin", action="append", default=[], metavar="ORIGIN",
                           help="allow one more origin (e.g. https://www.example.com, or "
                           "http://localhost:* for any port); repeatable")
            p.add_argument("--remove-origin", action="append", default=[], metavar="ORIGIN",
                           help="stop allowing an origin; repeatable")
            p.add_argument("--require-identity", action=argparse.BooleanOptionalAction,
                           help="require a verified user (user_token) on every chat")
            p.add_argument("--allow-anonymous", action=argparse.BooleanOptionalAction,
                           help="with --require-identity, still accept chats that name no user")
            # Never on the command line: argv is visible to every local user (ps, /proc)
            # and lands in shell history.
            p.add_argument("--identity-secret-file", metavar="PATH",
                           help="read the identity secret (at least "
                                f"{MIN_IDENTITY_SECRET_BYTES} bytes) from PATH, or - for "
                                "standard input")


def read_identity_secret(path: str) -> str:
    """The secret in a file (or stdin for "-"), one trailing newline stripped; raises
    ValueError when it is shorter than MIN_IDENTITY_SECRET_BYTES."""
    raw = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    secret = raw.removesuffix("\n").removesuffix("\r")
    if len(secret.encode("utf-8")) < MIN_IDENTITY_SECRET_BYTES:
        raise ValueError(f"the identity secret must be at least {MIN_IDENTITY_SECRET_BYTES} "
                         "bytes (e.g. `openssl rand -base64 48`)")
    return secret


def _public(settings: OrgSettings) -> dict[str, Any]:
    data = settings.to_json()
    data["identity_secret"] = "(set)" if settings.identity_secret else ""
    return data


def _origin(raw: str) -> str:
    """One allow-list entry as the core compares it: `*`, or `scheme://host[:port|:*]`."""
    value = raw.strip().rstrip("/")
    scheme, sep, rest = value.partition("://")
    if value != "*" and (not sep or scheme.lower() not in ("http", "https") or not rest
                         or "/" in rest):
        raise ValueError(f"{raw!r} is not an origin (scheme://host[:port], e.g. "
                         "https://www.example.com or http://localhost:*)")
    return value


def _edit_origins(current: tuple[str, ...], add: list[str],
                  remove: list[str]) -> tuple[str, ...]:
    """The list with `add` appended (once each) and `remove` taken out, order kept. An
    empty list means "any origin", so removing the last entry is refused rather than
    silently opening the key to every site."""
    gone = {_origin(o).lower() for o in remove}
    kept = [o for o in current if o.rstrip("/").lower() not in gone]
    for raw in add:
        value = _origin(raw)
        if value.lower() not in {o.rstrip("/").lower() for o in kept}:
            kept.append(value)
    if current and not kept:
        raise ValueError("removing every origin would allow any origin; add one first, or "
                         "use --allowed-origins '' to allow any on purpose")
    return tuple(kept)


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
    if ns.add_origin or ns.remove_origin:
        changes["allowed_origins"] = _edit_origins(
            changes.get("allowed_origins", settings.allowed_origins),
            ns.add_origin, ns.remove_origin,
        )
    if ns.identity_secret_file is not None:
        changes["identity_secret"] = read_identity_secret(ns.identity_secret_file)
    for name in ("require_identity", "allow_anonymous"):
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
            except (ValueError, OSError) as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            await store.update_org_settings(org.id, settings)
        print(json.dumps(_public(settings), indent=2, sort_keys=True))
        return 0
    finally:
        await store.close()
