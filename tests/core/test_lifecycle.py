"""Server lifecycle: durability across restarts, draining, health, reflection, interop,
and the generated code being current."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from harness import SECRET, Harness, auth, with_engine
from switchboard.v1 import chat_pb2, events_pb2

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / "node"


async def test_history_survives_restart(tmp_path: Path) -> None:
    first = await Harness.start(tmp_path)
    try:
        await first.scripted_agent(reply="stored reply")
        reply = await first.chat_once("remember me", agent="scripted")
    finally:
        await first.stop()
    second = await Harness.start(tmp_path)  # same database file
    try:
        listed = await second.chat.ListMessages(
            chat_pb2.ListMessagesRequest(conversation_id=reply.conversation_id), metadata=auth()
        )
        assert [(m.role, m.content) for m in listed.messages] == [
            ("user", "remember me"), ("assistant", "stored reply")
        ]
        more = await second.chat_once("again", conversation_id=reply.conversation_id)
        assert more.conversation_id == reply.conversation_id
        assert more.last_seq > reply.last_seq
    finally:
        await second.stop()


async def test_drain_reports_not_serving_and_stores_cancelled_turn(tmp_path: Path) -> None:
    sb = await Harness.start(tmp_path, engine=with_engine(shutdown_grace_s=0.2))
    stopped = False
    try:
        await sb.scripted_agent(reply="tick " * 500, delay_ms=20)
        health = health_pb2_grpc.HealthStub(sb.channel)
        status = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        call = sb.chat.StreamChat(
            chat_pb2.StreamChatRequest(turn=chat_pb2.TurnInput(message="go", agent="scripted")),
            metadata=auth(),
        )
        events = []
        async for reply in call:
            events.append(reply.event)
            if len(events) == 3:
                break
        conversation = events[0].conversation_id
        watcher = health.Watch(health_pb2.HealthCheckRequest(service=""))
        first = await watcher.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        stop_task = asyncio.create_task(sb.core.stop())
        second = await asyncio.wait_for(watcher.read(), timeout=5)
        assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
        watcher.cancel()
        call.cancel()
        await stop_task
        stopped = True
    finally:
        await sb.http.close()
        await sb.channel.close()
        if not stopped:
            await sb.core.stop()
        if sb.running.runner is not None:
            await sb.running.runner.cleanup()
    again = await Harness.start(tmp_path)
    try:
        listed = await again.chat.ListMessages(
            chat_pb2.ListMessagesRequest(conversation_id=conversation), metadata=auth()
        )
        assistant = [m for m in listed.messages if m.role == "assistant"]
        assert assistant and assistant[0].status == events_pb2.TURN_STATUS_CANCELLED
        assert assistant[0].content.startswith("tick")
    finally:
        await again.stop()


async def test_reflection_lists_chat_service(sb: Harness) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(sb.channel)

    async def one() -> reflection_pb2.ServerReflectionRequest:  # type: ignore[misc]
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names = []
    async for reply in stub.ServerReflectionInfo(one()):
        names = [s.name for s in reply.list_services_response.service]
    assert "switchboard.v1.ChatService" in names
    assert "grpc.health.v1.Health" in names


async def test_unauthenticated_rpc_carries_error_info(sb: Harness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sb.chat.Chat(chat_pb2.ChatRequest(turn=chat_pb2.TurnInput(message="x")),
                           metadata=auth("sk_wrong"))
    from shim.core_client import decode_error

    decoded = decode_error(err.value)
    assert decoded.code == "UNAUTHENTICATED" and decoded.reason == "unauthenticated"


def test_generated_code_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.skipif(not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").exists(),
                    reason="tests/node dependencies not installed (run `make node-deps`)")
async def test_node_grpc_js_client_streams_a_reply(sb: Harness) -> None:
    await sb.scripted_agent(reply="hello from switchboard")
    proc = await asyncio.create_subprocess_exec(
        "node", str(NODE_DIR / "grpc_stream.mjs"), sb.grpc_target, SECRET, "scripted", "hi",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err.decode()
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["text"] == "hello from switchboard"
    assert result["kinds"][0] == "turn_started" and result["kinds"][-1] == "completed"
    assert result["seqs"] == sorted(result["seqs"])


def test_errors_page_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_errors_doc.py"), "--check"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
