"""SIGTERM drains a real `switchboard serve`: readiness turns red and health NOT_SERVING at
once, new turns are refused (503 + Retry-After in every dialect's envelope, UNAVAILABLE
over gRPC), the turn already streaming finishes in full, then the process exits 0."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchboard.v1 import chat_pb2, chat_pb2_grpc

PORTS = re.compile(r"(core listening on 127\.0\.0\.1:|shim listening on http://127\.0\.0\.1:)"
                   r"(\d+)")
SECRET = "sk_demo_secret_key"
WIDGET = "ab_live_demo_widget_key"
TICKS = 30
AGENT = f"""
name: slow
slug: slow
provider:
  kind: scripted
  reply: "{'tick ' * TICKS}"
  delay_ms: 60
"""
# path, key, body, the envelope's error code: a new turn in each dialect while draining.
NEW_TURNS: dict[str, tuple[str, str, dict[str, Any], Any]] = {
    "halo": ("/api/sdk/chat", WIDGET, {"message": "hi"}, lambda b: b["error"]["code"]),
    "slug": ("/v1/api/chat/slow", SECRET, {"message": "hi", "stream": True},
             lambda b: b["error"]["name"]),
    "aibot": ("/v1/aibot/bots/slow/send-message", SECRET,
              {"messages": [{"role": "user", "content": "hi"}]}, lambda b: b["code"]),
}
EXPECTED = {"halo": "unavailable", "slug": "ServiceUnavailableError", "aibot": "shutting_down"}


async def run(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "launcher.cli", *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


async def test_sigterm_finishes_the_running_turn_refuses_new_ones_and_exits_0(
        tmp_path: Path) -> None:
    database = str(tmp_path / "sb.db")
    (tmp_path / "slow.yaml").write_text(AGENT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "launcher.cli", "serve", "--demo", "--grpc-port", "0",
        "--http-port", "0", "--database", database, "--shutdown-grace", "20",
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        env={**env, "SWITCHBOARD_LOG_LEVEL": "INFO"})
    assert proc.stderr is not None
    ports: dict[str, int] = {}
    log: list[str] = []
    try:
        while len(ports) < 2:
            line = (await asyncio.wait_for(proc.stderr.readline(), timeout=30)).decode()
            assert line, "serve exited early:\n" + "".join(log)
            log.append(line)
            if match := PORTS.search(line):
                ports["core" if match.group(1).startswith("core") else "shim"] = int(
                    match.group(2))
        reader = asyncio.create_task(proc.stderr.read())
        await run("agents", "apply", str(tmp_path / "slow.yaml"), "--database", database)
        base = f"http://127.0.0.1:{ports['shim']}"
        async with aiohttp.ClientSession(base) as http, grpc.aio.insecure_channel(
                f"127.0.0.1:{ports['core']}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            async with http.post("/v1/api/chat/slow", json={"message": "go", "stream": True},
                                 headers={"Authorization": f"Bearer {SECRET}"}) as stream:
                assert stream.status == 200
                first = await stream.content.readline()
                assert first.startswith(b"id: ") or first.startswith(b"data: "), first
                proc.send_signal(signal.SIGTERM)
                # Red at once, while the turn is still streaming.
                for _ in range(100):
                    async with http.get("/readyz") as resp:
                        if resp.status == 503:
                            break
                    await asyncio.sleep(0.05)
                assert resp.status == 503
                status = await health.Check(health_pb2.HealthCheckRequest(service=""))
                assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
                for name, (path, key, body, code_of) in NEW_TURNS.items():
                    async with http.post(path, json=body,
                                         headers={"Authorization": f"Bearer {key}"}) as resp:
                        assert resp.status == 503, (name, await resp.text())
                        assert resp.headers["Retry-After"] == "1", name
                        assert code_of(await resp.json()) == EXPECTED[name], name
                try:
                    await chat_pb2_grpc.ChatServiceStub(channel).Chat(
                        chat_pb2.ChatRequest(turn=chat_pb2.TurnInput(message="hi")),
                        metadata=[("authorization", f"Bearer {SECRET}")])
                    raise AssertionError("a new gRPC turn was accepted while draining")
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
                rest = (first + await stream.content.read()).decode()
        chunks = [json.loads(line.removeprefix("data: "))["chunk"]
                  for line in rest.splitlines()
                  if line.startswith("data: {") and '"chunk"' in line]
        assert "".join(chunks) == "tick " * TICKS, rest  # the whole turn, not a cut one
        assert rest.rstrip().endswith("data: [DONE]"), rest
        assert await asyncio.wait_for(proc.wait(), timeout=30) == 0
        text = (await reader).decode()
        assert "draining: 1 turns running" in text and "core stopped" in text, text
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
