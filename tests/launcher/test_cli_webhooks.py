"""`switchboard webhooks ...` run as a user would (a subprocess on a temp database), with
a receiver on an ephemeral port for `webhooks test`."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from webhook_receiver import Receiver

from core.clock import RandomIds
from core.outbox.deliveries import MAX_LISTED_DELIVERIES
from core.outbox.endpoints import MAX_ENDPOINTS_PER_ORG, WebhookEndpoint
from core.outbox.events import TEST_EVENT, handoff_requested
from core.store.factory import open_store

SECRET = "whsec_" + "c" * 40


async def run(db: Path, *args: str, stdin: str = "") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "launcher.cli", *args, "--database", str(db),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "SWITCHBOARD_LOG_LEVEL": "WARNING"},
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    path = tmp_path / "sb.db"
    code, _, err = await run(path, "keys", "create", "--org", "acme")
    assert code == 0, err
    return path


async def test_add_list_test_remove(db: Path) -> None:
    receiver = Receiver(SECRET, lambda: int(time.time()))
    await receiver.start()
    try:
        code, out, err = await run(db, "webhooks", "add", "--org", "acme", "--url",
                                   receiver.url, "--secret-file", "-", stdin=SECRET + "\n")
        assert code == 0, err
        assert out.startswith("created webhook endpoint we_") and "(events: *)" in out
        endpoint_id = out.split()[3]
        assert SECRET not in out  # a secret the user gave is not printed back
        code, out, _ = await run(db, "webhooks", "list", "--org", "acme")
        assert code == 0
        header, row = out.strip().splitlines()
        assert header.split("\t") == ["id", "url", "events", "secret", "created"]
        fields = row.split("\t")
        assert fields[:3] == [endpoint_id, receiver.url, "*"]
        assert SECRET not in row and fields[3].startswith("whsec_")

        code, out, err = await run(db, "webhooks", "test", endpoint_id, "--org", "acme")
        assert code == 0, err
        assert out.startswith("delivered evt_") and "HTTP 204" in out
        [event] = receiver.events.values()  # signature checked with SECRET
        assert event["type"] == TEST_EVENT and not receiver.rejected

        receiver.answer = 500
        code, out, err = await run(db, "webhooks", "test", endpoint_id, "--org", "acme")
        assert code == 1 and "HTTP 500" in err and len(err.strip().splitlines()) == 1

        code, out, _ = await run(db, "webhooks", "remove", endpoint_id, "--org", "acme")
        assert code == 0 and out.strip() == f"removed webhook endpoint {endpoint_id}"
        code, out, _ = await run(db, "webhooks", "list", "--org", "acme")
        assert out.strip().splitlines()[1:] == []
        code, _, err = await run(db, "webhooks", "remove", endpoint_id, "--org", "acme")
        assert code == 2 and "not found" in err
    finally:
        await receiver.stop()


async def test_a_secret_is_generated_when_none_is_given(db: Path) -> None:
    code, out, err = await run(db, "webhooks", "add", "--org", "acme", "--url",
                               "https://hooks.example.com/in", "--events",
                               "turn.completed,message.created")
    assert code == 0, err
    first, secret = out.strip().splitlines()
    assert "(events: turn.completed,message.created)" in first
    assert secret.startswith("whsec_") and len(secret) >= 32 and "shown once" in err
    code, out, _ = await run(db, "webhooks", "add", "--org", "acme", "--url",
                             "https://hooks.example.com/b", "--secret", SECRET)
    assert code == 0 and len(out.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "why"), [
    (["--url", "http://hooks.example.com/in"], "must use https"),
    (["--url", "not a url"], "spaces"),
    (["--url", "https://x.example/", "--secret", "short"], "at least 32 bytes"),
    (["--url", "https://x.example/", "--events", "turn.done"], "unknown event type"),
    (["--url", "https://x.example/", "--secret-file", "/nonexistent/secret"],
     "cannot read the secret file"),
])
async def test_bad_input_is_one_clear_line(db: Path, args: list[str], why: str) -> None:
    code, out, err = await run(db, "webhooks", "add", "--org", "acme", *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and why in err and "Traceback" not in err
    store = open_store(str(db))
    await store.open()
    try:
        org = await store.get_org_by_slug("acme")
        assert org is not None and await store.list_webhooks(org.id) == []  # none stored
    finally:
        await store.close()


async def test_unknown_organisation(db: Path) -> None:
    code, _, err = await run(db, "webhooks", "add", "--org", "nope", "--url",
                             "https://x.example/")
    assert code == 2 and "organisation 'nope' not found" in err


async def test_at_most_max_endpoints(db: Path) -> None:
    store = open_store(str(db))
    await store.open()
    try:
        org = await store.get_org_by_slug("acme")
        assert org is not None
        for n in range(MAX_ENDPOINTS_PER_ORG - 1):
            await store.create_webhook(WebhookEndpoint(
                f"we_{n}", org.id, f"https://x.example/{n}", SECRET, (), datetime.now(UTC)))
    finally:
        await store.close()
    code, _, err = await run(db, "webhooks", "add", "--org", "acme", "--url",
                             "https://x.example/last", "--secret", SECRET)
    assert code == 0, err
    code, _, err = await run(db, "webhooks", "add", "--org", "acme", "--url",
                             "https://x.example/more", "--secret", SECRET)
    assert code == 2 and f"at most {MAX_ENDPOINTS_PER_ORG}" in err


async def test_deliveries_show_the_log(db: Path) -> None:
    from datetime import UTC, datetime

    from core.store.factory import open_store

    code, out, _ = await run(db, "webhooks", "add", "--org", "acme", "--url",
                             "https://x.example/in", "--secret", SECRET)
    endpoint_id = out.split()[3]
    store = open_store(str(db))
    await store.open()
    try:
        org = await store.get_org_by_slug("acme")
        assert org is not None
        event = handoff_requested(RandomIds(), org.id, "c1", datetime.now(UTC),
                                  reason="api")
        await store.append_outbox([event])
    finally:
        await store.close()
    code, out, _ = await run(db, "webhooks", "deliveries", "--org", "acme")
    assert code == 0
    header, row = out.strip().splitlines()
    assert header.split("\t") == ["event", "type", "endpoint", "status", "attempts", "last",
                                  "next attempt", "delivered"]
    fields = row.split("\t")
    assert fields[:5] == [event.id, "handoff.requested", endpoint_id, "pending", "0"]
    assert fields[7] == "-"
    code, out, _ = await run(db, "webhooks", "deliveries", "--org", "acme", "--json",
                             "--status", "pending", "--limit", str(MAX_LISTED_DELIVERIES))
    assert code == 0 and '"event_id": "' + event.id in out
    code, out, _ = await run(db, "webhooks", "deliveries", "--org", "acme", "--status",
                             "delivered")
    assert out.strip().splitlines()[1:] == []
    code, _, err = await run(db, "webhooks", "deliveries", "--org", "acme", "--limit",
                             str(MAX_LISTED_DELIVERIES + 1))
    assert code == 2 and f"1 to {MAX_LISTED_DELIVERIES}" in err
