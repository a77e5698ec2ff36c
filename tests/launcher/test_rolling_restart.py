"""A rolling restart loses nothing (issue #14): two replicas (`switchboard serve`, core and
shim in one process) on one PostgreSQL database and one Redis, 50 clients streaming slug
SSE turns back to back, and each replica restarted in turn with SIGTERM.

A client does what one behind a load balancer does: a send refused while a replica
drains (503) goes to the other replica; a stream cut short is resumed on the other
replica with `Last-Event-ID`. Every acknowledged turn must arrive whole: its text is the
agent's reply exactly, its event ids strictly increase (no duplicate, no gap in the text),
and it ends with `[DONE]`. Skipped with the reason when PostgreSQL or Redis is
unreachable."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from redis_support import flushed_db, url_for

from core.demo.seed import DEMO_SECRET_KEY as SECRET

REDIS_DB = 10
REDIS_URL = url_for(REDIS_DB)
CLIENTS = 50
SHIM_LISTENING = re.compile(r"shim listening on http://127\.0\.0\.1:(\d+)")
PIECE, REPEAT = " tök", 30
REPLY = PIECE * REPEAT
# About 1.5 s a turn: several turns of each client overlap each restart.
AGENT = (f"name: Paced\nslug: paced\nprovider:\n  kind: scripted\n"
         f"  reply: \"{PIECE}\"\n  repeat: {REPEAT}\n  delay_ms: 50\n")
RETRY_S = 0.05  # a client's pause before sending again after a refusal (a real client's backoff)


class Replica:
    def __init__(self, proc: asyncio.subprocess.Process, port: int, log: list[str]) -> None:
        self.proc = proc
        self.base = f"http://127.0.0.1:{port}"
        self.log = log
        self._reader = asyncio.create_task(self._drain())

    @classmethod
    async def start(cls, *args: str) -> Replica:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "launcher.cli", "serve", "--http-port", "0",
            "--grpc-port", "0", *args,
            stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            env={**os.environ, "SWITCHBOARD_LOG_LEVEL": "INFO"})
        assert proc.stderr is not None
        log: list[str] = []
        while True:
            line = (await asyncio.wait_for(proc.stderr.readline(), timeout=30)).decode()
            assert line, "serve exited early:\n" + "".join(log)
            log.append(line)
            if match := SHIM_LISTENING.search(line):
                return cls(proc, int(match.group(1)), log)

    async def _drain(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.log.append(raw.decode())

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout=60)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await self._reader
        return self.proc.returncode or 0


@dataclass
class Tally:
    turns: int = 0  # acknowledged turns that arrived whole
    resumed: int = 0  # of which were resumed on the other replica
    refused: int = 0  # sends refused while a replica drained (sent again elsewhere)
    broken: list[str] = field(default_factory=list)  # what a client saw that it must not


@dataclass
class Fleet:
    replicas: list[Replica]

    def other(self, base: str) -> str:
        """A replica to send to: not `base` when there is another one up."""
        up = [r.base for r in self.replicas if r.proc.returncode is None]
        others = [b for b in up if b != base]
        return (others or up or [base])[0]


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    async with flushed_db(REDIS_DB, "the rolling-restart test and its replicas") as url:
        yield url


def _blocks(raw: bytes) -> tuple[list[tuple[int | None, str]], bytes]:
    """Complete SSE blocks as (id, data), and what is left over."""
    out = []
    while (end := raw.find(b"\n\n")) >= 0:
        block, raw = raw[:end].decode(), raw[end + 2:]
        ident, data = None, ""
        for line in block.split("\n"):
            if line.startswith("id: "):
                ident = int(line[4:])
            elif line.startswith("data: "):
                data = line[6:]
        out.append((ident, data))
    return out, raw


async def _read(resp: aiohttp.ClientResponse, seen: list[tuple[int | None, str]],
                cut_after: int = 0) -> bool:
    """Read SSE blocks into `seen` until [DONE] (True) or the connection ends (False);
    with `cut_after`, the client itself goes away after that many blocks (False)."""
    rest = b""
    try:
        async for chunk in resp.content.iter_any():
            blocks, rest = _blocks(rest + chunk)
            seen.extend(blocks)
            if any(data == "[DONE]" for _, data in blocks):
                return True
            if cut_after and len(seen) >= cut_after:
                resp.close()
                return False
    except (aiohttp.ClientError, ConnectionResetError):
        pass
    return False


async def _one_turn(http: aiohttp.ClientSession, fleet: Fleet, base: str, n: int,
                    tally: Tally) -> str:
    """Send one turn (to `base`, or elsewhere after a refusal) and follow it to its end,
    resuming on another replica when the stream is cut. Returns the replica to use next."""
    headers = {"Authorization": f"Bearer {SECRET}"}
    body = {"message": f"turn {n}", "stream": True}
    seen: list[tuple[int | None, str]] = []
    for _ in range(400):
        try:
            async with http.post(f"{base}/v1/api/chat/paced", json=body,
                                 headers=headers) as resp:
                if resp.status != 200:
                    text = await resp.text()
                    if resp.status == 503:  # draining: not acknowledged, send elsewhere
                        tally.refused += 1
                        base = fleet.other(base)
                        await asyncio.sleep(RETRY_S)
                        continue
                    tally.broken.append(f"send answered {resp.status}: {text[:200]}")
                    return base
                conversation = resp.headers["X-Conversation-Id"]
                # Every third turn the client drops mid-stream and comes back on the
                # other replica (within the detach grace) with Last-Event-ID.
                done = await _read(resp, seen, cut_after=5 if n % 3 == 0 else 0)
                break
        except (aiohttp.ClientConnectionError, ConnectionResetError):
            # Refused before any answer: nothing was acknowledged.
            tally.refused += 1
            base = fleet.other(base)
            await asyncio.sleep(RETRY_S)
    else:
        tally.broken.append("a send was refused everywhere for 20 s")
        return base
    resumes, why = 0, ""
    while not done:
        resumes += 1
        if resumes > 20:
            tally.broken.append(f"{conversation}: could not be resumed ({why})")
            return base
        base = fleet.other(base)
        last = max((i for i, _ in seen if i is not None), default=0)
        try:
            async with http.get(f"{base}/v1/api/chat/paced/stream",
                                params={"conversationId": conversation},
                                headers={**headers, "Last-Event-ID": str(last)}) as resp:
                if resp.status != 200:
                    why = f"{resp.status}: {(await resp.text())[:200]}"
                    await asyncio.sleep(RETRY_S)
                    continue
                done = await _read(resp, seen)
                why = f"cut again after {len(seen)} events at {base}: {seen[-3:]} last={last}"
        except (aiohttp.ClientConnectionError, ConnectionResetError) as exc:
            why = repr(exc)
            await asyncio.sleep(RETRY_S)
    ids = [i for i, _ in seen if i is not None]
    if ids != sorted(set(ids)):
        tally.broken.append(f"{conversation}: event ids {ids} repeat or go back")
    text = "".join(json.loads(d).get("chunk", "") for _, d in seen
                   if d and d != "[DONE]" and d.startswith("{"))
    if text != REPLY:
        tally.broken.append(f"{conversation}: got {text!r}")
    tally.turns += 1
    tally.resumed += resumes > 0
    return base


async def _client(http: aiohttp.ClientSession, fleet: Fleet, k: int, stop: asyncio.Event,
                  tally: Tally) -> None:
    base = fleet.replicas[k % 2].base
    n = 0
    while not stop.is_set():
        n += 1
        base = await _one_turn(http, fleet, base, n, tally)


async def test_restarting_each_replica_in_turn_loses_nothing(
        tmp_path: Path, pg_url: str, redis_url: str) -> None:
    common = ("--database", pg_url, "--redis", redis_url, "--shutdown-grace", "30",
              "--detach-grace", "5")
    agent = tmp_path / "paced.yaml"
    agent.write_text(AGENT, encoding="utf-8")
    first = await Replica.start("--demo", *common)
    fleet = Fleet([first])
    try:
        applied = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "launcher.cli", "agents", "apply", str(agent), "--org",
            "demo", "--database", pg_url, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        _, err = await applied.communicate()
        assert applied.returncode == 0, err.decode()
        # No request limit in the way of 50 clients on one key.
        setting = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "launcher.cli", "org", "set", "--org", "demo", "--rps",
            "10000", "--burst", "10000", "--max-streams", "1000", "--database", pg_url,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await setting.communicate()
        assert setting.returncode == 0, err.decode()
        fleet.replicas.append(await Replica.start(*common))
        tally = Tally()
        stop = asyncio.Event()
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=120)) as http:
            clients = [asyncio.create_task(_client(http, fleet, k, stop, tally))
                       for k in range(CLIENTS)]
            for index in range(2):
                await asyncio.sleep(1.0)  # streams under way on both replicas
                old = fleet.replicas[index]
                code = await old.stop()
                assert code == 0, "".join(old.log[-20:])
                fleet.replicas[index] = await Replica.start(*common)
            await asyncio.sleep(1.0)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*clients), timeout=120)
        assert not tally.broken, tally.broken[:5]
        # Both restarts happened under load: turns were acknowledged and finished
        # throughout (a third of them resumed on the other replica).
        assert tally.turns >= 2 * CLIENTS and tally.resumed >= CLIENTS // 2
    finally:
        for replica in fleet.replicas:
            await replica.stop()
