"""`switchboard webhooks add|list|remove|test|deliveries`: an organisation's webhook
endpoints (events out, see docs/webhooks.md) and their delivery log. Changes apply to
the next event; nothing needs a restart."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from core.clock import RandomIds, SystemClock
from core.config import CoreConfig
from core.outbox.deliveries import MAX_LISTED_DELIVERIES, STATUSES, DeliveryRecord
from core.outbox.dispatcher import DELIVERY_TIMEOUT_S, post_signed
from core.outbox.endpoints import (
    ENDPOINT_ID_PREFIX,
    MAX_SECRET_BYTES,
    MIN_SECRET_BYTES,
    EndpointError,
    WebhookEndpoint,
    check_secret,
    check_url,
    generate_secret,
    masked,
    parse_events,
)
from core.outbox.events import EVENT_TYPES, ping_event
from core.store.factory import open_store
from launcher.options import add_database_option

DEFAULT_LISTED = 50


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    hooks = sub.add_parser("webhooks", help="send events to your endpoints (signed, retried)")
    hooks_sub = hooks.add_subparsers(dest="webhooks_command", required=True)
    add = hooks_sub.add_parser("add", help="register an endpoint")
    add.add_argument("--org", default="demo", help="organisation slug")
    add.add_argument("--url", required=True,
                     help="https://... (plain http only to localhost / 127.0.0.1)")
    secret = add.add_mutually_exclusive_group()
    secret.add_argument("--secret", help="signing secret, "
                        f"{MIN_SECRET_BYTES}-{MAX_SECRET_BYTES} bytes of printable ASCII "
                        "(visible to other local users in argv: prefer --secret-file; "
                        "omit both to have one generated)")
    secret.add_argument("--secret-file", metavar="PATH",
                        help="read the signing secret from PATH, or - for standard input")
    add.add_argument("--events", action="append", default=[], metavar="TYPE[,TYPE...]",
                     help=f"event types to send (default: all): {', '.join(EVENT_TYPES)}")
    listing = hooks_sub.add_parser("list", help="list the organisation's endpoints")
    remove = hooks_sub.add_parser("remove", help="remove an endpoint (pending deliveries "
                                  "to it are cancelled)")
    remove.add_argument("endpoint_id", help="id of the endpoint (as `webhooks list` shows)")
    test = hooks_sub.add_parser("test", help="send a signed webhook.test event now")
    test.add_argument("endpoint_id", help="id of the endpoint (as `webhooks list` shows)")
    log = hooks_sub.add_parser("deliveries", help="the delivery log, newest first")
    log.add_argument("--status", choices=STATUSES, default="", help="only this status")
    log.add_argument("--endpoint", default="", help="only this endpoint")
    log.add_argument("--limit", type=int, default=DEFAULT_LISTED,
                     help=f"rows to show (default {DEFAULT_LISTED}, at most "
                          f"{MAX_LISTED_DELIVERIES})")
    log.add_argument("--json", action="store_true", help="one JSON object per line")
    for p in (listing, remove, test, log):
        p.add_argument("--org", default="demo", help="organisation slug")
    for p in (add, listing, remove, test, log):
        add_database_option(p)


def _read_secret(ns: argparse.Namespace) -> tuple[str, bool]:
    """(secret, generated?)"""
    if ns.secret_file is not None:
        try:
            raw = (sys.stdin.read() if ns.secret_file == "-"
                   else Path(ns.secret_file).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise EndpointError(f"cannot read the secret file: {exc}") from None
        return check_secret(raw.removesuffix("\n").removesuffix("\r")), False
    if ns.secret is not None:
        return check_secret(ns.secret), False
    return generate_secret(), True


def _when(moment: Any) -> str:
    return moment.isoformat(timespec="seconds") if moment is not None else "-"


def _row(d: DeliveryRecord) -> dict[str, Any]:
    return {
        "event_id": d.event_id, "type": d.event_type, "endpoint_id": d.endpoint_id,
        "url": d.url, "conversation_id": d.conversation_id, "status": d.status,
        "attempts": d.attempts, "last_status": d.last_status, "last_error": d.last_error,
        "next_attempt_at": _when(d.next_attempt_at) if d.next_attempt_at else None,
        "delivered_at": _when(d.delivered_at) if d.delivered_at else None,
        "created_at": _when(d.created_at),
    }


async def run(ns: argparse.Namespace, config: CoreConfig) -> int:
    command = ns.webhooks_command
    if command == "deliveries" and not 1 <= ns.limit <= MAX_LISTED_DELIVERIES:
        print(f"error: --limit must be 1 to {MAX_LISTED_DELIVERIES}", file=sys.stderr)
        return 2
    try:
        if command == "add":
            url = check_url(ns.url)
            events = parse_events(ns.events)
            secret, generated = _read_secret(ns)
    except EndpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store = open_store(config.database)
    await store.open()
    clock, ids = SystemClock(), RandomIds()
    try:
        org = await store.get_org_by_slug(ns.org)
        if org is None:
            print(f"error: organisation {ns.org!r} not found", file=sys.stderr)
            return 2
        if command == "add":
            endpoint = WebhookEndpoint(ENDPOINT_ID_PREFIX + ids.uuid().replace("-", "")[:24],
                                       org.id, url, secret, events, clock.now())
            try:
                await store.create_webhook(endpoint)
            except EndpointError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(f"created webhook endpoint {endpoint.id} for organisation {org.slug}: "
                  f"{url} (events: {endpoint.events_text})")
            if generated:
                print(secret)
                print("(the signing secret, shown once: store it now)", file=sys.stderr)
            return 0
        if command == "list":
            print("id\turl\tevents\tsecret\tcreated")
            for e in await store.list_webhooks(org.id):
                print(f"{e.id}\t{e.url}\t{e.events_text}\t{masked(e.secret)}\t"
                      f"{_when(e.created_at)}")
            return 0
        if command == "deliveries":
            found = await store.list_deliveries(org.id, ns.limit, status=ns.status,
                                                endpoint_id=ns.endpoint)
            if ns.json:
                for d in found:
                    print(json.dumps(_row(d)))
                return 0
            print("event\ttype\tendpoint\tstatus\tattempts\tlast\tnext attempt\tdelivered")
            for d in found:
                last = d.last_error or (str(d.last_status) if d.last_status else "-")
                print(f"{d.event_id}\t{d.event_type}\t{d.endpoint_id}\t{d.status}\t"
                      f"{d.attempts}\t{last}\t{_when(d.next_attempt_at)}\t"
                      f"{_when(d.delivered_at)}")
            return 0
        found_endpoint = await store.get_webhook(org.id, ns.endpoint_id)
        if found_endpoint is None:
            print(f"error: webhook endpoint {ns.endpoint_id!r} not found in organisation "
                  f"{org.slug}", file=sys.stderr)
            return 2
        if command == "remove":
            await store.remove_webhook(org.id, found_endpoint.id, clock.now())
            print(f"removed webhook endpoint {found_endpoint.id}")
            return 0
        return await _send_test(found_endpoint, clock, ids)
    finally:
        await store.close()


async def _send_test(endpoint: WebhookEndpoint, clock: SystemClock, ids: RandomIds) -> int:
    """A signed `webhook.test` straight to the endpoint (not through the outbox, not in
    the delivery log): the answer is printed now."""
    event = ping_event(ids, endpoint.org_id, clock.now())
    started = time.monotonic()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        ok, status, error = await post_signed(
            session, endpoint.url, endpoint.secret, event.id, event.type,
            event.body().encode("utf-8"), int(clock.now().timestamp()), DELIVERY_TIMEOUT_S)
    took = (time.monotonic() - started) * 1000
    if ok:
        print(f"delivered {event.id} to {endpoint.url}: HTTP {status} in {took:.0f} ms")
        return 0
    print(f"error: {endpoint.url} did not accept {event.id}: {error}", file=sys.stderr)
    return 1
