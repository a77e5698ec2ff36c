"""Limits one visitor cannot abuse (issue #11): per-visitor buckets on a shared widget key,
X-Forwarded-For only from trusted proxies, no body read before the key is checked, body
caps, and bounded connections."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from halo_client import token

from core.clientaddr import networks
from core.limits import MAX_LARGE_BODIES_IN_FLIGHT, MAX_SMALL_BODY_BYTES
from harness import WIDGET, Harness
from launcher.serve import ServeOptions
from shim.config import ShimConfig


async def start(tmp_path: Path, **shim: Any) -> Harness:
    return await Harness.start(tmp_path, serve=ServeOptions(http_port=0,
                                                            shim=ShimConfig(**shim)))


@pytest.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[Harness]:
    sb = await start(tmp_path, trusted_proxies=networks(["127.0.0.1"]))
    try:
        yield sb
    finally:
        await sb.stop()


async def visitor_limits(sb: Harness, burst: int = 2) -> None:
    await sb.scripted_agent(reply="ok")
    org = await sb.core.store.get_org(sb.org_id)
    assert org is not None
    extra = {**org.settings.extra, "rate_limit": {
        "rps": 0.001, "burst": 100, "visitor_rps": 0.001, "visitor_burst": burst}}
    await sb.core.store.update_org_settings(sb.org_id, replace(org.settings, extra=extra))


async def send(sb: Harness, body: dict[str, Any] | None = None, **headers: str) -> int:
    async with sb.http.post("/api/sdk/chat", json=body or {
            "message": "hi", "agent_id": "scripted"},
            headers={"Authorization": f"Bearer {WIDGET}", **headers}) as resp:
        return resp.status


async def test_one_visitor_at_its_limit_does_not_block_the_others(proxied: Harness) -> None:
    await visitor_limits(proxied)
    a = {"X-Forwarded-For": "203.0.113.7"}
    assert [await send(proxied, **a) for _ in range(3)] == [200, 200, 429]
    assert await send(proxied, **{"X-Forwarded-For": "203.0.113.8"}) == 200
    # A client-written hop left of the proxy's proves nothing: still visitor A.
    assert await send(proxied, **{"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}) == 429
    # A verified user is their own visitor, wherever they come from.
    bob = {"message": "hi", "agent_id": "scripted", "user_id": "bob",
           "user_token": token("bob")}
    assert [await send(proxied, bob, **a) for _ in range(3)] == [200, 200, 429]


async def test_forwarded_for_is_ignored_without_a_trusted_proxy(sb: Harness) -> None:
    await visitor_limits(sb)
    assert await send(sb, **{"X-Forwarded-For": "203.0.113.1"}) == 200
    assert await send(sb, **{"X-Forwarded-For": "203.0.113.2"}) == 200
    assert await send(sb, **{"X-Forwarded-For": "203.0.113.3"}) == 429  # all 127.0.0.1


async def test_per_user_spend_is_charged_to_the_visitor_not_the_claimed_id(
    sb: Harness,
) -> None:
    await sb.scripted_agent(reply="ok")
    assert await send(sb, {"message": "hi", "agent_id": "scripted", "user_id": "alice"}) == 200
    assert await send(sb, {"message": "hi", "agent_id": "scripted", "user_id": "carol",
                           "user_token": token("carol")}) == 200
    await asyncio.sleep(0.1)
    with sqlite3.connect(sb.database) as db:
        users = {row[0] for row in db.execute("SELECT user_id FROM usage_ledger")}
    assert "alice" not in users
    assert {"visitor:127.0.0.1", "carol"} <= users


async def raw_request(sb: Harness, head: str, body: bytes, *,
                      declared: int | None = None) -> tuple[asyncio.StreamReader,
                                                            asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", sb.running.http_port)
    length = len(body) if declared is None else declared
    writer.write((head + f"Content-Length: {length}\r\n\r\n").encode() + body)
    await writer.drain()
    return reader, writer


def head(path: str, key: str) -> str:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\n")


async def test_an_invalid_key_is_refused_before_its_body_is_read(sb: Harness) -> None:
    """35 MiB declared, 1 KiB sent: the 401 arrives while the client still owes the rest
    (before this fix the shim waited for, buffered and parsed the whole body)."""
    reader, writer = await raw_request(sb, head("/api/sdk/chat", "ab_live_wrong"),
                                       b"{" + b" " * 1023, declared=35 * 1024 * 1024)
    try:
        status = await asyncio.wait_for(reader.readline(), timeout=10)
        assert status.startswith(b"HTTP/1.1 401"), status
    finally:
        writer.close()


async def test_small_routes_cap_their_bodies_at_the_boundary(sb: Harness) -> None:
    def body(size: int) -> bytes:
        base = {"session_id": "chat_00000000-0000-0000-0000-000000000000", "pad": ""}
        fixed = len(json.dumps(base).encode())
        return json.dumps({**base, "pad": "a" * (size - fixed)}).encode()

    for size, expected in ((MAX_SMALL_BODY_BYTES, 404), (MAX_SMALL_BODY_BYTES + 1, 413)):
        data = body(size)
        assert len(data) == size
        async with sb.http.post("/api/sdk/chat/stop", data=data, headers={
                "Authorization": f"Bearer {WIDGET}",
                "Content-Type": "application/json"}) as resp:
            assert resp.status == expected, await resp.text()


async def test_large_bodies_are_parsed_a_few_at_a_time(sb: Harness) -> None:
    """MAX_LARGE_BODIES_IN_FLIGHT slow large bodies hold every slot: one more large body
    waits (small requests do not), and goes through once a slot frees."""
    await sb.scripted_agent(reply="ok")
    size = MAX_SMALL_BODY_BYTES * 2
    hog_body = b'{"message": "hi", "agent_id": "scripted", "pad": "' + b"a" * 1000
    hogs = [await raw_request(sb, head("/api/sdk/chat", WIDGET), hog_body, declared=size)
            for _ in range(MAX_LARGE_BODIES_IN_FLIGHT)]
    await asyncio.sleep(0.3)
    full = json.dumps({"message": "hi", "agent_id": "scripted",
                       "images": ["data:image/png;base64," + "A" * size]}).encode()
    reader, writer = await raw_request(sb, head("/api/sdk/chat", WIDGET), full)
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readline(), timeout=0.5)
        async with sb.http.post("/api/sdk/chat/stop", json={"session_id": "chat_x"},
                                headers={"Authorization": f"Bearer {WIDGET}"}) as resp:
            assert resp.status in (400, 404)
        hogs[0][1].close()
        status = await asyncio.wait_for(reader.readline(), timeout=10)
        assert status.startswith(b"HTTP/1.1 200"), status
    finally:
        writer.close()
        for _, w in hogs[1:]:
            w.close()


async def test_a_connection_without_a_request_head_is_closed(tmp_path: Path) -> None:
    sb = await start(tmp_path, request_head_timeout_s=0.3)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", sb.running.http_port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), timeout=10) == b""  # closed by server
        writer.close()
        # A complete head in time is served as before.
        async with sb.http.get("/healthz") as resp:
            assert resp.status == 200
    finally:
        await sb.stop()


async def test_connections_past_the_cap_are_refused_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    cap = 5
    sb = await start(tmp_path, max_connections=cap)
    held = []
    try:
        for _ in range(cap):
            held.append(await asyncio.open_connection("127.0.0.1", sb.running.http_port))
        await asyncio.sleep(0.1)
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", sb.running.http_port)
            answer = await asyncio.wait_for(reader.read(), timeout=10)
            assert answer.startswith(b"HTTP/1.1 503")
            writer.close()
        refusals = [r for r in caplog.records if "refused" in r.getMessage()]
        assert len(refusals) == 1 and not any(r.exc_info for r in caplog.records)
        for _, w in held:
            w.close()
        await asyncio.sleep(0.2)
        async with sb.http.get("/healthz") as resp:
            assert resp.status == 200
    finally:
        await sb.stop()


async def test_flow_sessions_and_messages_have_per_visitor_limits(proxied: Harness) -> None:
    await visitor_limits(proxied)
    statuses = []
    for _ in range(3):
        async with proxied.http.post("/api/public/v1/chat/sessions", json={}, headers={
                "Authorization": f"Bearer {WIDGET}",
                "X-Forwarded-For": "203.0.113.9"}) as resp:
            statuses.append(resp.status)
    assert statuses == [200, 200, 429]
    async with proxied.http.post("/api/public/v1/chat/sessions", json={}, headers={
            "Authorization": f"Bearer {WIDGET}", "X-Forwarded-For": "203.0.113.10"}) as resp:
        assert resp.status == 200
