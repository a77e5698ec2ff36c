"""Two core processes on one SQLite database, each behind its own shim: interleaved turns
on shared conversations never collide (the store allocates sequence numbers and lets
one turn run per conversation, whichever process runs it)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp

from core.store.factory import open_store

LISTENING = re.compile(r"(core listening on 127\.0\.0\.1:|shim listening on http://127\.0\.0\.1:)"
                       r"(\d+)")
TURNS = 200
CONVERSATIONS = 4
CLIENTS_PER_SHIM = 4
SECRET = "sk_demo_secret_key"


class Proc:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.log: list[str] = []

    @classmethod
    async def start(cls, *args: str) -> tuple[Proc, int]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "launcher.cli", "serve", *args,
            stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            env={**os.environ, "SWITCHBOARD_LOG_LEVEL": "INFO"},
        )
        self = cls(proc)
        assert proc.stderr is not None
        while True:
            line = (await asyncio.wait_for(proc.stderr.readline(), timeout=30)).decode()
            assert line, "serve exited early:\n" + "".join(self.log)
            self.log.append(line)
            match = LISTENING.search(line)
            if match:
                # Keep draining stderr so the process never blocks on a full pipe.
                self.reader = asyncio.create_task(self._drain())
                return self, int(match.group(2))

    async def _drain(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.log.append(raw.decode())

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout=20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await self.reader


async def _turn(http: aiohttp.ClientSession, base: str, session: str, n: int) -> str:
    """One turn; a 429 turn_in_progress (the other process holds the conversation) is
    retried, as a client would."""
    body: dict[str, Any] = {"message": f"How do I set up event tracking? ({n})",
                            "agent_id": "support-agent"}
    if session:
        body["session_id"] = session
    deadline = asyncio.get_running_loop().time() + 30
    while asyncio.get_running_loop().time() < deadline:
        async with http.post(f"{base}/api/sdk/chat", json=body,
                             headers={"Authorization": f"Bearer {SECRET}"}) as resp:
            data = await resp.json()
            if resp.status == 200:
                return str(resp.headers.get("X-Session-Id") or data.get("session_id"))
            assert resp.status == 429 and "turn_in_progress" in str(data), (resp.status, data)
        await asyncio.sleep(0.01)
    raise AssertionError("a turn never got its conversation")


async def test_two_cores_share_conversations_without_collisions(tmp_path: Path) -> None:
    db = str(tmp_path / "shared.db")
    procs: list[Proc] = []
    try:
        # The first core seeds the demo organisation; the second only opens the database.
        core_a, port_a = await Proc.start("--role", "core", "--demo", "--grpc-port", "0",
                                          "--database", db, "--detach-grace", "0")
        procs.append(core_a)
        # Every retry counts against the key's rate limit: lift it for this test.
        org_set = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "launcher.cli", "org", "set", "--org", "demo", "--rps",
            "100000", "--burst", "100000", "--database", db,
            stdout=asyncio.subprocess.DEVNULL,
        )
        assert await org_set.wait() == 0
        core_b, port_b = await Proc.start("--role", "core", "--grpc-port", "0",
                                          "--database", db, "--detach-grace", "0")
        procs.append(core_b)
        bases = []
        for port in (port_a, port_b):
            shim, http_port = await Proc.start("--role", "shim", "--core", f"127.0.0.1:{port}",
                                               "--http-port", "0")
            procs.append(shim)
            bases.append(f"http://127.0.0.1:{http_port}")

        async with aiohttp.ClientSession() as http:
            sessions = [await _turn(http, bases[i % 2], "", i) for i in range(CONVERSATIONS)]
            queue: asyncio.Queue[int] = asyncio.Queue()
            for n in range(CONVERSATIONS, TURNS):
                queue.put_nowait(n)

            async def client(base: str) -> None:
                while not queue.empty():
                    n = queue.get_nowait()
                    # Turn n goes to conversation n % 4 through either shim: every
                    # conversation is written by both core processes.
                    await _turn(http, base, sessions[n % CONVERSATIONS], n)

            await asyncio.gather(*(client(base) for base in bases
                                   for _ in range(CLIENTS_PER_SHIM)))
    finally:
        for proc in reversed(procs):
            await proc.stop()
    logs = "".join(line for p in procs for line in p.log)
    assert "Traceback" not in logs and "could not be stored" not in logs, logs[-4000:]

    store = open_store(db)
    await store.open()
    try:
        org = await store.get_org_by_slug("demo")
        assert org is not None
        total = 0
        for session in sessions:
            conversation = await store.get_conversation(org.id, session.removeprefix("chat_"))
            assert conversation is not None, session
            events = await store.list_events(org.id, conversation.id, 0)
            # Every number once, in order, with no gap: 1..last_seq.
            assert [e.seq for e in events] == list(range(1, conversation.last_seq + 1))
            turns = [e.turn_id for e in events if e.body.__class__.__name__ == "Completed"]
            assert len(turns) == len(set(turns))
            total += len(turns)
            messages, _ = await store.list_messages(org.id, conversation.id, 1000)
            assert [m.role for m in messages] == ["user", "assistant"] * len(turns)
        assert total == TURNS
    finally:
        await store.close()
