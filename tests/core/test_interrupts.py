"""Client tools, interrupts and resume in the core, over real gRPC (and the aibot dialect
where the HTTP status is the point): durability across a restart, expiry with an
injected clock, double resume, client-tool validation and its limits."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from core import limits
from core.clock import FixedClock
from core.engine.handoff import WAITING_ACK
from harness import SECRET, Harness, auth, with_engine
from launcher.cli import _config, build_parser
from switchboard.v1 import chat_pb2

WEATHER_ARGS = {"city": "Paris, FR", "units": "metric"}


def tool(name: str = "get_weather", description: str = "Weather.",
         parameters: dict[str, Any] | None = None) -> chat_pb2.ToolDefinition:
    schema = struct_pb2.Struct()
    schema.update(parameters if parameters is not None else {
        "type": "object", "properties": {"city": {"type": "string"}}})
    return chat_pb2.ToolDefinition(name=name, description=description, parameters=schema)


def turn(message: str = "weather?", **fields: Any) -> chat_pb2.TurnInput:
    fields.setdefault("client_tools", [tool()])
    return chat_pb2.TurnInput(message=message, agent="weather", **fields)


def resume(interrupt_id: str, **results: Any) -> chat_pb2.TurnInput:
    return chat_pb2.TurnInput(resume=chat_pb2.ResumeInput(
        interrupt_id=interrupt_id,
        results=[chat_pb2.ToolResultInput(tool_call_id=k, result_json=json.dumps(v))
                 for k, v in results.items()],
    ))


async def weather_agent(sb: Harness) -> None:
    await sb.scripted_agent(
        "weather", reply="Weather: {tool_results}", args_chunk=5,
        tool_calls=[{"name": "get_weather", "arguments": WEATHER_ARGS}],
    )


async def chat(sb: Harness, turn_input: chat_pb2.TurnInput) -> chat_pb2.ChatResponse:
    reply: chat_pb2.ChatResponse = await sb.chat.Chat(chat_pb2.ChatRequest(turn=turn_input),
                                                      metadata=auth())
    return reply


async def grpc_error(sb: Harness, turn_input: chat_pb2.TurnInput) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await chat(sb, turn_input)
    return err.value


def reason(err: grpc.aio.AioRpcError) -> str:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""


# -- the round trip -----------------------------------------------------------------------


async def test_unary_chat_returns_the_interrupt_and_pending_calls(sb: Harness) -> None:
    await weather_agent(sb)
    reply = await chat(sb, turn())
    assert not reply.HasField("completed")
    assert reply.interrupt.interrupt_id.startswith("int_")
    assert list(reply.interrupt.tool_call_ids) == ["call_0_0"]
    assert [(c.tool_call_id, c.tool_name, json.loads(c.arguments_json))
            for c in reply.pending_tool_calls] == [("call_0_0", "get_weather", WEATHER_ARGS)]
    done = await chat(sb, resume(reply.interrupt.interrupt_id, call_0_0={"temp": 21}))
    assert done.completed.text == 'Weather: {"temp": 21}'
    assert done.conversation_id == reply.conversation_id
    assert done.turn_id == reply.turn_id  # the same turn continues


async def test_converse_carries_client_tools_and_resume(sb: Harness) -> None:
    await weather_agent(sb)
    queue: asyncio.Queue[chat_pb2.ConverseRequest | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[chat_pb2.ConverseRequest]:
        while (item := await queue.get()) is not None:
            yield item

    call = sb.chat.Converse(requests(), metadata=auth())
    await queue.put(chat_pb2.ConverseRequest(start_turn=turn()))
    kinds: list[list[str]] = [[]]
    args: list[str] = []
    async for reply in call:
        event = reply.event
        kind = event.WhichOneof("kind")
        kinds[-1].append(kind)
        if kind == "tool_call_start":
            assert event.tool_call_start.client_side
        if kind == "tool_call_args":
            args.append(event.tool_call_args.delta)
        if kind == "interrupt":
            assert json.loads("".join(args)) == WEATHER_ARGS
            kinds.append([])
            await queue.put(chat_pb2.ConverseRequest(start_turn=resume(
                event.interrupt.interrupt_id, call_0_0="sunny")))
        if kind == "completed":
            assert event.completed.text == 'Weather: "sunny"'
            await queue.put(None)
    first, second = kinds
    assert first[0] == "turn_started" and first[-1] == "interrupt"
    assert first.index("tool_call_start") < first.index("tool_call_args") < first.index(
        "tool_call_end")
    assert second[:2] == ["turn_started", "tool_result"] and second[-1] == "completed"


async def test_resume_after_a_restart(tmp_path: Path) -> None:
    database = str(tmp_path / "durable.db")
    first = await Harness.start(tmp_path, database=database)
    try:
        await weather_agent(first)
        reply = await chat(first, turn())
    finally:
        await first.stop()
    second = await Harness.start(tmp_path, database=database)
    try:
        async with second.http.post(
            "/v1/aibot/bots/weather/send-message",
            json={"resume": {"interruptId": reply.interrupt.interrupt_id,
                             "payload": {"call_0_0": "after restart"}}},
            headers={"Authorization": "Bearer sk_demo_secret_key"},
        ) as resp:
            assert resp.status == 200
            raw = (await resp.read()).decode()
        data = [json.loads(line.removeprefix("data: ")) for line in raw.splitlines()
                if line.startswith("data: {")]
        assert data[0] == {"type": "tool-result", "result": "after restart",
                           "toolCallId": "call_0_0"}
        text = "".join(d["content"] for d in data if d["type"] == "text")
        assert text == 'Weather: "after restart"'
        assert raw.endswith("data: [DONE]\n\n")
    finally:
        await second.stop()


async def test_resume_without_tools_reuses_the_turns_client_tools(sb: Harness) -> None:
    """A second client-tool call after a resume still interrupts, though the resume did
    not repeat `tools`."""
    await sb.apply_agent({"name": "twice", "provider": {
        "kind": "scripted", "tool_calls": [{"name": "get_weather", "arguments": {}}]}})
    reply = await chat(sb, chat_pb2.TurnInput(message="x", agent="twice",
                                              client_tools=[tool()]))
    assert reply.HasField("interrupt")
    record = await sb.core.store.get_interrupt(sb.org_id, reply.interrupt.interrupt_id)
    assert record is not None
    assert [t["name"] for t in record.state["client_tools"]] == ["get_weather"]


# -- expiry, double resume, wrong conversation ----------------------------------------------


async def test_expiry_boundary_with_an_injected_clock(tmp_path: Path) -> None:
    clock = FixedClock()
    sb = await Harness.start(tmp_path, clock=clock)
    try:
        await weather_agent(sb)
        ttl = limits.DEFAULT_INTERRUPT_TTL_S
        late = await chat(sb, turn())
        in_time = await chat(sb, turn())
        assert late.interrupt.expires_at.ToDatetime().replace(tzinfo=clock.now().tzinfo) == (
            clock.now() + timedelta(seconds=ttl))
        clock.advance(ttl - 1)  # the last second it can be resumed
        done = await chat(sb, resume(in_time.interrupt.interrupt_id, call_0_0=1))
        assert done.completed.text == "Weather: 1"
        clock.advance(1)  # now == expires_at: expired
        err = await grpc_error(sb, resume(late.interrupt.interrupt_id, call_0_0=1))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason(err) == "interrupt_expired"
        async with sb.http.post(
            "/v1/aibot/bots/weather/send-message",
            json={"resume": {"interruptId": late.interrupt.interrupt_id,
                             "payload": {"call_0_0": 1}}},
            headers={"Authorization": "Bearer sk_demo_secret_key"},
        ) as resp:
            assert resp.status == 410
            assert (await resp.json())["code"] == "interrupt_expired"
    finally:
        await sb.stop()


async def test_interrupt_ttl_is_configurable(tmp_path: Path) -> None:
    clock = FixedClock()
    sb = await Harness.start(tmp_path, clock=clock, engine=with_engine(interrupt_ttl_s=60))
    try:
        await weather_agent(sb)
        reply = await chat(sb, turn())
        expires = reply.interrupt.expires_at.ToDatetime().replace(tzinfo=clock.now().tzinfo)
        assert expires == clock.now() + timedelta(seconds=60)
        clock.advance(60)
        err = await grpc_error(sb, resume(reply.interrupt.interrupt_id, call_0_0=1))
        assert reason(err) == "interrupt_expired"
    finally:
        await sb.stop()


def test_interrupt_ttl_flag() -> None:
    ns = build_parser().parse_args(["serve", "--interrupt-ttl", "60"])
    assert _config(ns).engine.interrupt_ttl_s == 60
    ns = build_parser().parse_args(["serve"])
    assert _config(ns).engine.interrupt_ttl_s == limits.DEFAULT_INTERRUPT_TTL_S
    for bad in ("0", "-5", "inf", "nan"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["serve", "--interrupt-ttl", bad])


async def test_double_resume_is_already_exists(sb: Harness) -> None:
    await weather_agent(sb)
    reply = await chat(sb, turn())
    await chat(sb, resume(reply.interrupt.interrupt_id, call_0_0=1))
    err = await grpc_error(sb, resume(reply.interrupt.interrupt_id, call_0_0=1))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    assert reason(err) == "interrupt_already_resumed"


async def test_unknown_or_foreign_interrupt_is_not_found(sb: Harness) -> None:
    await weather_agent(sb)
    reply = await chat(sb, turn())
    other = await chat(sb, turn("another conversation"))
    err = await grpc_error(sb, resume("int_unknown", call_0_0=1))
    assert err.code() == grpc.StatusCode.NOT_FOUND and reason(err) == "interrupt_not_found"
    wrong = resume(reply.interrupt.interrupt_id, call_0_0=1)
    wrong.conversation_id = other.conversation_id
    err = await grpc_error(sb, wrong)
    assert err.code() == grpc.StatusCode.NOT_FOUND and reason(err) == "interrupt_not_found"


async def test_interrupt_of_another_org_is_not_found(sb: Harness) -> None:
    from core.domain import Organisation, OrgSettings

    await weather_agent(sb)
    reply = await chat(sb, turn())
    other = Organisation("org-2", "other", "Other", OrgSettings(), sb.core.clock.now())
    await sb.core.store.create_org(other)
    _, raw = await sb.core.auth.create_key(other.id, "secret", sb.core.ids)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sb.chat.Chat(chat_pb2.ChatRequest(turn=resume(reply.interrupt.interrupt_id,
                                                            call_0_0=1)), metadata=auth(raw))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_result_that_is_not_json_is_invalid(sb: Harness) -> None:
    await weather_agent(sb)
    reply = await chat(sb, turn())
    bad = chat_pb2.TurnInput(resume=chat_pb2.ResumeInput(
        interrupt_id=reply.interrupt.interrupt_id,
        results=[chat_pb2.ToolResultInput(tool_call_id="call_0_0", result_json="not json")]))
    err = await grpc_error(sb, bad)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and reason(err) == "invalid_input"
    # Refused before the interrupt was claimed: it can still be resumed.
    done = await chat(sb, resume(reply.interrupt.interrupt_id, call_0_0="ok"))
    assert done.completed.text == 'Weather: "ok"'


# -- client tool validation and limits ------------------------------------------------------


@pytest.mark.parametrize("tools", [
    [tool(name="")],
    [tool(name="has space")],
    [tool(name="dots.not.allowed")],
    [tool(), tool()],
    [tool(parameters={"type": "nonsense"})],
    [tool(parameters={"type": "object", "properties": {"a": {"minLength": -1}}})],
    [tool(parameters={"type": "array"})],
    [tool(name="create_ticket")],  # a server tool of the demo support agent
])
async def test_invalid_client_tools(sb: Harness, tools: list[chat_pb2.ToolDefinition]) -> None:
    err = await grpc_error(sb, chat_pb2.TurnInput(message="x", agent="support-agent",
                                                  client_tools=tools))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and reason(err) == "invalid_tools"


async def test_valid_schemas_are_accepted(sb: Harness) -> None:
    await sb.scripted_agent("plain", reply="ok")
    tools = [
        tool(name="no_args", parameters={}),
        tool(name="draft7", parameters={"$schema": "http://json-schema.org/draft-07/schema#",
                                        "type": "object", "properties": {
                                            "n": {"type": "integer", "maximum": 5}}}),
        tool(name="Open-Page_2", parameters={"type": "object", "required": ["url"],
                                             "properties": {"url": {"type": "string",
                                                                    "format": "uri"}}}),
    ]
    reply = await chat(sb, chat_pb2.TurnInput(message="x", agent="plain", client_tools=tools))
    assert reply.completed.text == "ok"


async def test_client_tool_name_length_boundary(sb: Harness) -> None:
    await sb.scripted_agent("plain", reply="ok")
    at = "n" * limits.MAX_CLIENT_TOOL_NAME_CHARS
    reply = await chat(sb, chat_pb2.TurnInput(message="x", agent="plain",
                                              client_tools=[tool(name=at)]))
    assert reply.completed.text == "ok"
    err = await grpc_error(sb, chat_pb2.TurnInput(message="x", agent="plain",
                                                  client_tools=[tool(name=at + "n")]))
    assert reason(err) == "invalid_tools"


async def test_client_tool_description_length_boundary(sb: Harness) -> None:
    await sb.scripted_agent("plain", reply="ok")
    at = "é" * limits.MAX_CLIENT_TOOL_DESCRIPTION_CHARS
    reply = await chat(sb, chat_pb2.TurnInput(message="x", agent="plain",
                                              client_tools=[tool(description=at)]))
    assert reply.completed.text == "ok"
    err = await grpc_error(sb, chat_pb2.TurnInput(message="x", agent="plain",
                                                  client_tools=[tool(description=at + "é")]))
    assert reason(err) == "invalid_tools"


def _schema_of_size(size: int) -> dict[str, Any]:
    """An object schema whose compact JSON is exactly `size` bytes."""
    base = {"type": "object", "description": ""}
    overhead = len(json.dumps(base, separators=(",", ":")))
    return {"type": "object", "description": "d" * (size - overhead)}


async def test_client_tool_parameters_size_boundary(sb: Harness) -> None:
    await sb.scripted_agent("plain", reply="ok")
    limit = limits.MAX_CLIENT_TOOL_PARAMETERS_BYTES
    reply = await chat(sb, chat_pb2.TurnInput(
        message="x", agent="plain", client_tools=[tool(parameters=_schema_of_size(limit))]))
    assert reply.completed.text == "ok"
    err = await grpc_error(sb, chat_pb2.TurnInput(
        message="x", agent="plain", client_tools=[tool(parameters=_schema_of_size(limit + 1))]))
    assert reason(err) == "invalid_tools"


async def test_client_tool_count_boundary(sb: Harness) -> None:
    await sb.scripted_agent("plain", reply="ok")
    tools = [tool(name=f"t{i}") for i in range(limits.MAX_CLIENT_TOOLS + 1)]
    reply = await chat(sb, chat_pb2.TurnInput(message="x", agent="plain",
                                              client_tools=tools[:-1]))
    assert reply.completed.text == "ok"
    err = await grpc_error(sb, chat_pb2.TurnInput(message="x", agent="plain",
                                                  client_tools=tools))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_resumed_turn_is_billed_once(sb: Harness) -> None:
    await weather_agent(sb)
    paused = await chat(sb, turn())
    done = await chat(sb, resume(paused.interrupt.interrupt_id, call_0_0={"t": 1}))
    rows = await sb.core.store.db.fetchall(  # type: ignore[attr-defined]
        "SELECT prompt_tokens, completion_tokens FROM usage_ledger WHERE turn_id = ?",
        (paused.turn_id,))
    assert sum(r[0] for r in rows) == done.completed.usage.prompt_tokens
    assert sum(r[1] for r in rows) == done.completed.usage.completion_tokens


async def test_a_duplicate_resume_attaches_to_the_running_one(sb: Harness) -> None:
    await sb.scripted_agent(  # slow enough that the duplicate arrives while it runs
        "weather", reply="Weather: {tool_results} " + "word " * 20, delay_ms=5,
        tool_calls=[{"name": "get_weather", "arguments": WEATHER_ARGS}],
    )
    paused = await chat(sb, turn())
    again = resume(paused.interrupt.interrupt_id, call_0_0={"t": 1})
    again.idempotency_key = "resume-1"
    first, second = await asyncio.gather(chat(sb, again), chat(sb, again))
    assert first.SerializeToString() == second.SerializeToString()


async def test_a_resumed_turn_is_billed_to_the_conversations_user(sb: Harness) -> None:
    """A resume carries no identity; both segments of the turn are charged to the user
    who started it (a trusted secret-key caller naming `alice`), never to "anonymous",
    so per-user budgets see all of it."""
    await weather_agent(sb)
    first = await chat(sb, turn(user_id="alice"))
    await chat(sb, resume(first.interrupt.interrupt_id, call_0_0={"temp": 21}))
    with sqlite3.connect(sb.database) as db:
        rows = db.execute("SELECT user_id FROM usage_ledger WHERE turn_id = ?",
                          (first.turn_id,)).fetchall()
    assert [r[0] for r in rows] == ["alice", "alice"]


async def test_a_resume_after_a_handoff_answers_with_the_acknowledgement(sb: Harness) -> None:
    """Handed to a person while the client ran its tool: the resume records the result and
    answers with the waiting acknowledgement; the agent (model) does not run."""
    await weather_agent(sb)
    first = await chat(sb, turn())
    async with sb.http.post(
            f"/api/operator/v1/conversations/{first.conversation_id}/handoff", json={},
            headers={"Authorization": f"Bearer {SECRET}"}) as resp:
        assert resp.status == 200, await resp.text()
    done = await chat(sb, resume(first.interrupt.interrupt_id, call_0_0={"temp": 21}))
    assert done.completed.text == WAITING_ACK.format(team="support")
    assert "Weather" not in done.completed.text
