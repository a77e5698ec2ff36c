"""Live turns across two replicas (`serve --database postgresql://... --redis ...`): a
client follows, resumes or duplicates a turn on the replica that does not run it.

Two real cores with their shims on one PostgreSQL database and one Redis db (REDIS_DB,
flushed by each test). Every resume through the other replica must equal the
uninterrupted stream byte for byte. Skipped with the reason when PostgreSQL or Redis is
unreachable."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from redis_support import flushed_db, url_for

from core import redis_limits
from core.engine.leases import Leases
from core.engine.recovery import INCOMPLETE
from core.events import Event, TextDelta
from core.ids import canonical_conversation_id
from core.redis_live import (
    ENDED_TTL_S,
    FOLLOWER_TTL_S,
    FOLLOWERS_PREFIX,
    RedisLive,
    decode,
    stream_key,
)
from core.store.sqlite import SqliteStore
from harness import SECRET, WIDGET, Harness, auth, with_engine
from switchboard.v1 import chat_pb2

REDIS_DB = 12
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
REDIS_URL = url_for(REDIS_DB)
REPLY = " ".join(["héllo wörld ✓"] * 12)  # 36 tokens
DELAY_MS = 20  # under a second a turn: long enough to cross replicas mid-turn
GRACE_S = 1.0
ID_LINE = re.compile(rb"^id: (\d+)$", re.MULTILINE)


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    async with flushed_db(REDIS_DB, "cross-replica tests") as url:
        yield url


@pytest.fixture
async def pair(tmp_path: Path, pg_url: str, redis_url: str
               ) -> AsyncIterator[tuple[Harness, Harness]]:
    engine = with_engine(detach_grace_s=GRACE_S)
    a = await Harness.start(tmp_path, database=pg_url, redis_url=redis_url, engine=engine)
    b = await Harness.start(tmp_path, database=pg_url, redis_url=redis_url, engine=engine)
    await a.scripted_agent("uni", reply=REPLY, delay_ms=DELAY_MS)
    try:
        yield a, b
    finally:
        await a.stop()
        await b.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn_redis(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def start_redis(port: int, procs: list[subprocess.Popen[bytes]]) -> None:
    procs.append(spawn_redis(port))
    client = aioredis.Redis(port=port, socket_connect_timeout=0.2)
    try:
        for _ in range(100):
            try:
                await client.ping()
                return
            except (RedisError, OSError):
                await asyncio.sleep(0.05)
        pytest.fail("redis-server did not start")
    finally:
        await client.aclose()


@pytest.fixture
def own_redis() -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    """A redis-server of this test's own on an ephemeral port (killed and restarted)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed: the outage test starts its own")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield free_port(), procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def bearer(key: str = SECRET, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


def running_on(sb: Harness, conversation_id: str) -> bool:
    canonical = canonical_conversation_id(conversation_id)
    assert canonical is not None
    live = sb.core.engine.live.get(canonical)
    return live is not None and not live.done


async def wait_done(sb: Harness, conversation_id: str) -> None:
    for _ in range(500):
        if not running_on(sb, conversation_id):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the turn never finished")


async def read_all(sb: Harness, method: str, path: str, **kw: Any) -> tuple[int, bytes]:
    async with sb.http.request(method, path, **kw) as resp:
        return resp.status, await resp.read()


async def cut(sb: Harness, method: str, path: str, k: int, id_header: str,
              **kw: Any) -> tuple[bytes, str]:
    """Open a stream, read its first k body bytes, drop the connection."""
    resp = await sb.http.request(method, path, **kw)
    try:
        assert resp.status == 200
        return await resp.content.readexactly(k), resp.headers[id_header]
    finally:
        resp.close()


def sse_prefix(received: bytes) -> tuple[bytes, int | None]:
    """The complete events up to the last one carrying an `id:`, and that id."""
    end, last, position = 0, None, 0
    while (boundary := received.find(b"\n\n", position)) >= 0:
        block = received[position:boundary]
        position = boundary + 2
        match = ID_LINE.search(block)
        if match:
            end, last = position, int(match.group(1))
    return received[:end], last


async def test_resumes_on_the_other_replica_equal_the_uninterrupted_stream(
        pair: tuple[Harness, Harness]) -> None:
    """One pair of replicas for every dialect's resume (starting two costs more than the
    resumes): slug and aibot `Last-Event-ID`, Halo byte offset, gRPC ResumeStream."""
    await _sse_resumes(*pair)
    await _halo_resumes(*pair)
    await _grpc_resumes(*pair)
    await _streams_expire(pair[0])


async def _sse_resumes(a: Harness, b: Harness) -> None:
    routes = [
        ("/v1/api/chat/uni", {"message": "go", "stream": True}, "/v1/api/chat/uni/stream"),
        ("/v1/aibot/bots/uni/send-message", {"messages": [{"role": "user", "content": "go"}]},
         "/v1/aibot/bots/uni/stream"),
    ]
    for send, body, stream in routes:
        status, full = await read_all(a, "POST", send, json=body, headers=bearer())
        assert status == 200 and full.endswith(b"data: [DONE]\n\n")
        crossed = 0
        for k in (len(full) // 8, len(full) // 2):
            received, conversation = await cut(a, "POST", send, k, "X-Conversation-Id",
                                               json=body, headers=bearer())
            prefix, last_id = sse_prefix(received)
            assert last_id is not None
            crossed += running_on(a, conversation)
            status, rest = await read_all(b, "GET", stream, params={
                "conversationId": conversation}, headers=bearer(**{
                    "Last-Event-ID": str(last_id)}))
            assert status == 200
            assert prefix + rest == full, (send, k)
            await wait_done(a, conversation)
        assert crossed >= 1  # resumed while the turn still ran on A


async def _halo_resumes(a: Harness, b: Harness) -> None:
    body = {"message": "go", "agent_id": "uni"}
    halo = {"Authorization": f"Bearer {WIDGET}"}
    status, full = await read_all(a, "POST", "/api/sdk/chat/stream", json=body, headers=halo)
    assert status == 200 and full.endswith(b"\x1e")
    crossed = 0
    for k in (7, len(full) // 2):
        received, session = await cut(a, "POST", "/api/sdk/chat/stream", k, "X-Session-Id",
                                      json=body, headers=halo)
        crossed += running_on(a, session)
        status, rest = await read_all(b, "GET", "/api/sdk/chat/stream/resume", params={
            "session_id": session, "offset": str(k)}, headers=halo)
        assert status == 200
        assert received + rest == full, f"cut at byte {k}"
        await wait_done(a, session)
    assert crossed >= 1


async def _grpc_resumes(a: Harness, b: Harness) -> None:
    call = a.chat.StreamChat(chat_pb2.StreamChatRequest(
        turn=chat_pb2.TurnInput(message="go", agent="uni")), metadata=auth())
    seen = [await call.read() for _ in range(4)]
    call.cancel()
    conversation = seen[0].event.turn_started.conversation_id
    assert running_on(a, conversation)
    resumed = b.chat.ResumeStream(chat_pb2.ResumeStreamRequest(
        conversation_id=conversation, after_seq=seen[-1].event.seq), metadata=auth())
    rest = [r.event async for r in resumed]
    assert rest[-1].HasField("completed")
    await wait_done(a, conversation)
    stored = a.chat.ResumeStream(chat_pb2.ResumeStreamRequest(
        conversation_id=conversation, after_seq=0), metadata=auth())
    whole = [r.event.SerializeToString() async for r in stored]
    assert [s.event.SerializeToString() for s in seen] + [
        e.SerializeToString() for e in rest] == whole


async def test_one_idempotency_key_sent_to_both_replicas_at_once_is_one_turn(
        pair: tuple[Harness, Harness], pg_url: str) -> None:
    a, b = pair
    body = {"message": "go", "stream": True}
    for n in range(3):
        headers = bearer(**{"Idempotency-Key": f"both-{n}"})
        (sa, ra), (sb_, rb) = await asyncio.gather(
            read_all(a, "POST", "/v1/api/chat/uni", json=body, headers=headers),
            read_all(b, "POST", "/v1/api/chat/uni", json=body, headers=headers))
        assert (sa, sb_) == (200, 200), (ra[:200], rb[:200])
        assert ra == rb and ra.endswith(b"data: [DONE]\n\n")
    conn = await asyncpg.connect(pg_url)
    try:
        keys = await conn.fetch("SELECT idempotency_key FROM turns")
    finally:
        await conn.close()
    assert sorted(k[0].rsplit("/", 1)[-1] for k in keys) == ["both-0", "both-1", "both-2"]


async def test_reattach_on_the_other_replica_within_grace_loses_nothing(
        pair: tuple[Harness, Harness]) -> None:
    """A cancels a detached turn after its grace unless a follower on B still reads it:
    the turn runs past A's grace and B's stream is the whole reply."""
    a, b = pair
    await a.scripted_agent("slow", reply=REPLY, delay_ms=DELAY_MS * 3)
    body = {"message": "go", "stream": True}
    received, conversation = await cut(a, "POST", "/v1/api/chat/slow", 150,
                                       "X-Conversation-Id", json=body, headers=bearer())
    prefix, last_id = sse_prefix(received)
    await asyncio.sleep(GRACE_S / 4)
    status, rest = await read_all(b, "GET", "/v1/api/chat/slow/stream", params={
        "conversationId": conversation}, headers=bearer(**{"Last-Event-ID": str(last_id)}))
    assert status == 200
    # The stored turn (a replay equals the uninterrupted stream): completed, not cancelled.
    async with a.http.get("/v1/api/chat/slow/stream", params={"conversationId": conversation},
                          headers=bearer()) as resp:
        replay = await resp.read()
    assert prefix + rest == replay and replay.endswith(b"data: [DONE]\n\n")
    canonical = canonical_conversation_id(conversation)
    assert canonical is not None
    turn = await a.core.store.last_turn(a.org_id, canonical)
    assert turn is not None and turn.status == "completed"


async def test_a_dead_replicas_turn_fails_at_lease_expiry_and_its_follower_gets_the_error(
        pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    for sb in (a, b):  # short leases, so the test waits about a second, not ten
        assert sb.core.leases is not None
        await sb.core.leases.stop()
        sb.core.leases = Leases(sb.core.store, sb.core.engine.live, sb.core.clock,
                                sb.core.engine.replica_id, lease_s=1.0, renew_every_s=0.2)
        sb.core.leases.start()
    await a.scripted_agent("endless", reply=REPLY, delay_ms=DELAY_MS * 10)
    # The client on A stays connected (so A's detach grace plays no part), unheard.
    async with a.http.post("/v1/api/chat/endless", json={"message": "go", "stream": True},
                           headers=bearer()) as original:
        assert original.status == 200
        conversation = original.headers["X-Conversation-Id"]
        _, last_id = sse_prefix(await original.content.readexactly(150))
        assert a.core.leases is not None
        await a.core.leases.stop()  # A "dies": it stops renewing (its turn runs on)
        status, rest = await read_all(b, "GET", "/v1/api/chat/endless/stream", params={
            "conversationId": conversation}, headers=bearer(**{
                "Last-Event-ID": str(last_id)}))
        assert status == 200
        last_frame = rest.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
        assert b"The turn ended without completing" in last_frame
        assert running_on(a, conversation)  # B did not wait for A's turn to end
        original.close()
    canonical = canonical_conversation_id(conversation)
    assert canonical is not None
    turn = await b.core.store.last_turn(b.org_id, canonical)
    assert turn is not None and turn.status == "failed"  # by B's sweep: A never ended it
    live = a.core.engine.live.get(canonical)
    if live is not None:
        live.cancel("stopped")  # let A's teardown be quick


async def _streams_expire(a: Harness) -> None:
    """Every finished turn's stream holds that turn only, in sequence, and expires;
    followers' marks lapse by themselves."""
    conversation = ""
    for _ in range(2):  # two turns in one conversation: its stream keeps the second only
        async with a.http.post("/v1/api/chat/uni", headers=bearer(), json={
                "message": "go", "stream": True, **(
                    {"conversationId": conversation} if conversation else {})}) as resp:
            assert resp.status == 200
            conversation = resp.headers["X-Conversation-Id"]
            await resp.read()
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        canonical = canonical_conversation_id(conversation)
        assert canonical is not None
        second = await a.core.store.last_turn(a.org_id, canonical)
        assert second is not None
        kept = [decode(f[b"e"]) for _, f in await client.xrange(stream_key(canonical))]
        assert {e.turn_id for e in kept} == {second.id}
        keys = [k async for k in client.scan_iter(match=stream_key("*"))]
        assert len(keys) >= 8
        for key in keys:
            assert 0 < await client.ttl(key) <= ENDED_TTL_S
            events = [decode(fields[b"e"]) for _, fields in await client.xrange(key)]
            assert len({e.turn_id for e in events}) == 1 and events[-1].terminal
            assert [e.seq for e in events] == list(range(events[0].seq,
                                                         events[-1].seq + 1))
        async for key in client.scan_iter(match=FOLLOWERS_PREFIX + "*"):
            assert 0 < await client.pttl(key) <= (FOLLOWER_TTL_S + GRACE_S + 1) * 1000
    finally:
        await client.aclose()


async def test_redis_down_streams_stay_on_their_replica_and_it_comes_back_by_itself(
        tmp_path: Path, pg_url: str, own_redis: tuple[int, list[subprocess.Popen[bytes]]],
        caplog: pytest.LogCaptureFixture) -> None:
    """While Redis is down a resume on B waits for the turn's stored end (no 500, no
    hang, no gap), one line says so; with Redis back B follows the live stream again."""
    port, procs = own_redis
    await start_redis(port, procs)
    url = f"redis://127.0.0.1:{port}/0"
    engine = with_engine(detach_grace_s=5.0)  # without Redis, A cannot see B's follower
    a = await Harness.start(tmp_path, database=pg_url, redis_url=url, engine=engine)
    b = await Harness.start(tmp_path, database=pg_url, redis_url=url, engine=engine)
    try:
        await a.scripted_agent("uni", reply=REPLY, delay_ms=DELAY_MS)
        send, body = "/v1/api/chat/uni", {"message": "go", "stream": True}
        status, full = await read_all(a, "POST", send, json=body, headers=bearer())
        assert status == 200
        procs[0].kill()
        procs[0].wait()
        with caplog.at_level(logging.WARNING, logger="switchboard.redis"):
            for _ in range(2):
                received, conversation = await cut(a, "POST", send, len(full) // 8,
                                                   "X-Conversation-Id", json=body,
                                                   headers=bearer())
                prefix, last_id = sse_prefix(received)
                assert running_on(a, conversation)
                status, rest = await read_all(b, "GET", send + "/stream", params={
                    "conversationId": conversation}, headers=bearer(**{
                        "Last-Event-ID": str(last_id)}))
                assert status == 200 and prefix + rest == full
            down = [r.getMessage() for r in caplog.records if "live streams reach only"
                    in r.getMessage()]
            assert len(down) == 2, down  # one line per replica for the whole outage
            await start_redis(port, procs)
            await asyncio.sleep(redis_limits.RETRY_AFTER_S)
            received, conversation = await cut(a, "POST", send, len(full) // 8,
                                               "X-Conversation-Id", json=body,
                                               headers=bearer())
            prefix, last_id = sse_prefix(received)
            crossed = running_on(a, conversation)
            status, rest = await read_all(b, "GET", send + "/stream", params={
                "conversationId": conversation}, headers=bearer(**{
                    "Last-Event-ID": str(last_id)}))
            assert status == 200 and prefix + rest == full and crossed
            assert any("reachable again: live streams" in r.getMessage()
                       for r in caplog.records)
    finally:
        await a.stop()
        await b.stop()


async def test_a_swept_turns_error_lands_even_past_what_its_old_replica_published(
        redis_url: str, tmp_path: Path) -> None:
    """A replica that was only slow may publish past the seq the sweep gave the stored
    error; the error still lands (just past the top), so followers notice and end."""
    live = RedisLive(redis_url, SqliteStore(tmp_path / "unused.db"), 0.0)
    try:
        events = [Event(n, "c1", "t1", T0, TextDelta("x")) for n in range(1, 6)]
        await live.write(stream_key("c1"), events, 1)
        error = Event(4, "c1", "t1", T0, INCOMPLETE)
        await live.publish_terminal(error)
        entries = await live.redis.xrange(stream_key("c1"))
        assert entries[-1][0] == b"6-0" and decode(entries[-1][1][b"e"]) == error
        assert 0 < await live.redis.ttl(stream_key("c1")) <= ENDED_TTL_S
        assert await live.tail_seq("c1", "t1") == 4  # the error's own number
    finally:
        await live.close()


async def test_a_replica_starting_leaves_another_live_replicas_turns_alone(
        pair: tuple[Harness, Harness], tmp_path: Path, pg_url: str, redis_url: str) -> None:
    """Start-up recovery on a shared store fails only turns whose lease expired: a core
    starting while A streams a turn does not end that turn."""
    a, _ = pair
    async with a.http.post("/v1/api/chat/uni", json={"message": "go", "stream": True},
                           headers=bearer()) as resp:
        assert resp.status == 200
        await resp.content.readuntil(b"\n\n")
        assert a.core.leases is not None
        await a.core.leases.tick()  # A's turn holds its lease now
        c = await Harness.start(tmp_path, database=pg_url, redis_url=redis_url)
        await c.stop()
        body = await resp.read()
    assert body.endswith(b"data: [DONE]\n\n") and b"without completing" not in body
    turn = await a.core.store.last_turn(a.org_id, canonical_conversation_id(
        resp.headers["X-Conversation-Id"]) or "")
    assert turn is not None and turn.status == "completed"
