"""A database that cannot be written: every write route answers 503 + Retry-After in its
dialect's envelope (gRPC: UNAVAILABLE with RetryInfo), readiness turns NOT_SERVING, and
both come back by themselves once the database can be written again.

The failure is real: another connection holds SQLite's exclusive write lock past the
core's busy timeout (the tests run as root, so a read-only file would still be written),
and for the classifier, a read-only connection and a page cap give real SQLITE_READONLY
and SQLITE_FULL errors.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from core.errors import Code, Reason
from core.events import TurnStatus
from core.grpcapi.readiness import PROBE_INTERVAL_S
from core.ids import canonical_conversation_id
from core.store.failures import StoreUnavailable, classify
from harness import SECRET, WIDGET, Harness, auth
from switchboard.v1 import chat_pb2

BUSY_MS = 50


@pytest.fixture
async def locked_sb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    monkeypatch.setenv("SWITCHBOARD_SQLITE_BUSY_TIMEOUT_MS", str(BUSY_MS))
    harness = await Harness.start(tmp_path)
    try:
        yield harness
    finally:
        await harness.stop()


@contextmanager
def write_locked(database: str) -> Iterator[None]:
    """Another process's view: a connection holding the exclusive write lock."""
    conn = sqlite3.connect(database, isolation_level=None, timeout=5)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


async def session_token(sb: Harness) -> str:
    async with sb.http.post("/api/public/v1/chat/sessions",
                            headers={"Authorization": f"Bearer {WIDGET}"}) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["token"])


# name → (path, key, body, the envelope's error code)
def _halo(b: dict[str, Any]) -> str:
    return str(b["error"]["code"])


WRITE_ROUTES: dict[str, tuple[str, str, dict[str, Any], Any]] = {
    "halo": ("/api/sdk/chat", WIDGET, {"message": "hi"}, _halo),
    "halo-stream": ("/api/sdk/chat/stream", WIDGET, {"message": "hi"}, _halo),
    "slug": ("/v1/api/chat/support-agent", SECRET, {"message": "hi"},
             lambda b: b["error"]["name"]),
    "slug-stream": ("/v1/api/chat/support-agent", SECRET, {"message": "hi", "stream": True},
                    lambda b: b["error"]["name"]),
    "slug-short-prefix": ("/chat/support-agent", SECRET, {"message": "hi"},
                          lambda b: b["error"]["name"]),
    "aibot": ("/v1/aibot/bots/support-agent/send-message", SECRET,
              {"messages": [{"role": "user", "content": "hi"}]}, lambda b: b["code"]),
    "aibot-stream": ("/v1/aibot/bots/support-agent/send-message", SECRET,
                     {"messages": [{"role": "user", "content": "hi"}], "stream": True},
                     lambda b: b["code"]),
    "flow-sessions": ("/api/public/v1/chat/sessions", WIDGET, {}, _halo),
    "flow-messages": ("/api/public/v1/chat/messages", "session",
                      {"text": "hi", "intentName": "order_status"}, _halo),
}
EXPECTED_CODE = {"halo": "unavailable", "halo-stream": "unavailable",
                 "slug": "ServiceUnavailableError", "slug-stream": "ServiceUnavailableError",
                 "slug-short-prefix": "ServiceUnavailableError",
                 "aibot": "store_unavailable", "aibot-stream": "store_unavailable",
                 "flow-sessions": "unavailable", "flow-messages": "unavailable"}


async def health_status(sb: Harness) -> int:
    reply = await health_pb2_grpc.HealthStub(sb.channel).Check(
        health_pb2.HealthCheckRequest(service=""))
    return int(reply.status)


async def ready(sb: Harness) -> int:
    async with sb.http.get("/readyz") as resp:
        return resp.status


async def eventually(check: Any, expected: Any, timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if await check() == expected:
            return
        await asyncio.sleep(0.05)
    assert await check() == expected


async def test_every_write_route_is_503_while_the_database_is_locked(
        locked_sb: Harness) -> None:
    sb = locked_sb
    token = await session_token(sb)
    with write_locked(sb.database):
        for name, (path, key, body, code_of) in WRITE_ROUTES.items():
            bearer = token if key == "session" else key
            async with sb.http.post(path, json=body,
                                    headers={"Authorization": f"Bearer {bearer}"}) as resp:
                assert resp.status == 503, (name, resp.status, await resp.text())
                assert resp.headers["Retry-After"] == "1", name
                assert resp.content_type == "application/json", name
                assert code_of(await resp.json()) == EXPECTED_CODE[name], name
        # Readiness follows: NOT_SERVING over gRPC, 503 on /readyz.
        assert await health_status(sb) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert await ready(sb) == 503
    # Nobody writes: the probe notices the lock is gone and readiness comes back alone.
    await asyncio.sleep(PROBE_INTERVAL_S)
    await eventually(lambda: health_status(sb), health_pb2.HealthCheckResponse.SERVING)
    assert await ready(sb) == 200
    async with sb.http.post("/api/sdk/chat", json={"message": "hi"},
                            headers={"Authorization": f"Bearer {WIDGET}"}) as resp:
        assert resp.status == 200, await resp.text()


LONG = " ".join(f"word{i}" for i in range(300))

# name → (start path, its body, stop path, the stop's body given the conversation id, key,
# the envelope's error code)
STOP_ROUTES: dict[str, tuple[str, dict[str, Any], str, Any, str, Any]] = {
    "halo": ("/api/sdk/chat/stream", {"message": "go", "agent_id": "long"},
             "/api/sdk/chat/stop", lambda c: {"session_id": c}, WIDGET, _halo),
    "slug": ("/v1/api/chat/long", {"message": "go", "stream": True}, "/v1/api/chat/long/stop",
             lambda c: {"conversationId": c}, SECRET, lambda b: b["error"]["name"]),
    "slug-short-prefix": ("/chat/long", {"message": "go", "stream": True}, "/chat/long/stop",
                          lambda c: {"conversationId": c}, SECRET,
                          lambda b: b["error"]["name"]),
    "aibot": ("/v1/aibot/bots/long/send-message",
              {"messages": [{"role": "user", "content": "go"}]},
              "/v1/aibot/bots/long/stop", lambda c: {"conversationId": c}, SECRET,
              lambda b: b["code"]),
}


@pytest.mark.parametrize("name", list(STOP_ROUTES))
async def test_a_stop_whose_turn_cannot_be_stored_is_503(locked_sb: Harness,
                                                         name: str) -> None:
    """"stopped: true" promises the partial reply is stored; with the database locked it
    is not, so the stop answers 503 + Retry-After (the turn has ended all the same, and is
    stored as failed once the database can be written)."""
    sb = locked_sb
    start, body, stop_path, stop_body, key, code_of = STOP_ROUTES[name]
    await sb.scripted_agent("long", reply=LONG, delay_ms=10)
    headers = {"Authorization": f"Bearer {key}"}
    async with sb.http.post(start, json=body, headers=headers) as stream:
        assert stream.status == 200, await stream.text()
        conversation = stream.headers.get("X-Conversation-Id") or stream.headers[
            "X-Session-Id"]
        await stream.content.readexactly(20)
        with write_locked(sb.database):
            async with sb.http.post(stop_path, json=stop_body(conversation),
                                    headers=headers) as stop:
                assert stop.status == 503, (name, await stop.text())
                assert stop.headers["Retry-After"] == "1"
                assert code_of(await stop.json()) == EXPECTED_CODE[name]
        if name == "halo":
            # A Halo text stream has no error record: one cut short ends unterminated.
            with pytest.raises(aiohttp.ClientPayloadError):
                await stream.read()
        else:
            # The SSE dialects end with one error event in their envelope.
            last = (await stream.read()).decode().rstrip("\n").rsplit("\n", 1)[-1]
            assert code_of(json.loads(last.removeprefix("data: "))) == EXPECTED_CODE[name]
    # Once the database takes writes again the turn is stored as failed, not left running,
    # and a second stop says nothing runs.
    canonical = canonical_conversation_id(conversation)
    assert canonical is not None
    for _ in range(100):
        turn = await sb.core.store.last_turn(sb.org_id, canonical)
        if turn is not None and turn.status != TurnStatus.RUNNING:
            break
        await asyncio.sleep(0.05)
    assert turn is not None and turn.status == TurnStatus.FAILED
    async with sb.http.post(stop_path, json=stop_body(conversation), headers=headers) as stop:
        assert stop.status == 200, await stop.text()


async def test_grpc_write_is_unavailable_with_retry_info(locked_sb: Harness) -> None:
    sb = locked_sb
    with write_locked(sb.database), pytest.raises(grpc.aio.AioRpcError) as caught:
        await sb.chat.Chat(chat_pb2.ChatRequest(turn=chat_pb2.TurnInput(message="hi")),
                           metadata=auth())
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    status = rpc_status.from_call(caught.value)  # type: ignore[arg-type]
    assert status is not None
    found: dict[str, Any] = {}
    for detail in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo):
            if detail.Is(kind.DESCRIPTOR):
                msg = kind()
                detail.Unpack(msg)
                found[kind.__name__] = msg
    assert found["ErrorInfo"].reason == "store_unavailable"
    assert found["RetryInfo"].retry_delay.seconds == 1


def test_classifier_uses_sqlite_result_codes(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x BLOB)")
    conn.commit()
    conn.close()
    readonly = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as ro:
        readonly.execute("INSERT INTO t VALUES (1)")
    readonly.close()
    full = sqlite3.connect(path)
    full.execute("PRAGMA max_page_count = 3")
    with pytest.raises(sqlite3.DatabaseError) as disk_full:
        full.execute("INSERT INTO t VALUES (?)", (b"x" * 100_000,))
    full.close()
    for caught in (ro, disk_full):
        error = classify(caught.value)
        assert isinstance(error, StoreUnavailable), caught.value
        assert error.code == Code.UNAVAILABLE and error.reason == Reason.STORE_UNAVAILABLE
        assert error.retry_after_s == 1.0
    # Not the store's fault: a constraint or a bad statement stays what it is.
    bad = sqlite3.connect(":memory:")
    with pytest.raises(sqlite3.OperationalError) as syntax:
        bad.execute("SELEC 1")
    assert classify(syntax.value) is None
    bad.execute("CREATE TABLE u (x PRIMARY KEY)")
    bad.execute("INSERT INTO u VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError) as dup:
        bad.execute("INSERT INTO u VALUES (1)")
    assert classify(dup.value) is None


async def test_a_full_disk_is_503_and_readiness_recovers_when_space_is_back(
        sb: Harness) -> None:
    """A real SQLITE_FULL: the writer connection may not grow the file past its size."""
    writer = sb.core.store.db._writer  # type: ignore[attr-defined]
    cursor = await writer.execute("PRAGMA page_count")
    pages = (await cursor.fetchone())[0]
    await cursor.close()
    await writer.execute(f"PRAGMA max_page_count = {pages}")
    headers = {"Authorization": f"Bearer {WIDGET}"}
    statuses = []
    body: dict[str, Any] = {}
    for i in range(50):  # until the free pages are used up
        async with sb.http.post("/api/sdk/chat", json={"message": f"fill {i} " + "x" * 2000},
                                headers=headers) as resp:
            statuses.append(resp.status)
            if resp.status != 200:
                body = await resp.json()
                assert resp.headers["Retry-After"] == "1"
                break
    assert statuses[-1] == 503, statuses
    assert body["error"]["code"] == "unavailable"
    assert await ready(sb) == 503
    await writer.execute("PRAGMA max_page_count = 1073741823")
    await eventually(lambda: ready(sb), 200)
    async with sb.http.post("/api/sdk/chat", json={"message": "hi"}, headers=headers) as resp:
        assert resp.status == 200
