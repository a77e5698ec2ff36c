"""FlowService over real gRPC: sessions, executions, waits, limits, restarts, transcripts."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from core.clock import FixedClock
from core.flows import limits
from core.flows.store import ModelPrice
from core.pricing import Pricing
from harness import SECRET, WIDGET, Harness, auth
from switchboard.v1 import chat_pb2, flow_pb2, flow_pb2_grpc

WAITING = flow_pb2.EXECUTION_STATUS_WAITING
COMPLETED = flow_pb2.EXECUTION_STATUS_COMPLETED
HANDED_OFF = flow_pb2.EXECUTION_STATUS_HANDED_OFF
FAILED = flow_pb2.EXECUTION_STATUS_FAILED


def flow_stub(sb: Harness) -> flow_pb2_grpc.FlowServiceStub:
    return flow_pb2_grpc.FlowServiceStub(sb.channel)


async def session(sb: Harness, key: str = WIDGET, agent: str = "",
                  conversation_id: str = "") -> flow_pb2.CreateSessionResponse:
    reply: flow_pb2.CreateSessionResponse = await flow_stub(sb).CreateSession(
        flow_pb2.CreateSessionRequest(agent=agent, conversation_id=conversation_id),
        metadata=auth(key))
    return reply


async def send(sb: Harness, token: str, **fields: Any) -> flow_pb2.FlowReply:
    value = fields.pop("input", None)
    variables = fields.pop("variables", None)
    request = flow_pb2.SendMessageRequest(**fields)
    if value is not None:
        json_format.ParseDict(value, request.input)
    if variables is not None:
        s = struct_pb2.Struct()
        s.update(variables)
        request.variables.CopyFrom(s)
    reply: flow_pb2.SendMessageResponse = await flow_stub(sb).SendMessage(
        request, metadata=auth(token))
    return reply.reply


def error_info(exc: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo")


@pytest.fixture
async def clocked(tmp_path: Path) -> AsyncIterator[tuple[Harness, FixedClock]]:
    clock = FixedClock()
    harness = await Harness.start(tmp_path, clock=clock)
    try:
        yield harness, clock
    finally:
        await harness.stop()


async def test_session_lists_the_agents_intents(sb: Harness) -> None:
    s = await session(sb)
    assert s.token.startswith("sess_") and s.conversation_id
    names = [i.name for i in s.intents]
    assert {"order_status", "book_demo", "product_question"} <= set(names)
    assert all(i.description for i in s.intents)
    listed = await flow_stub(sb).ListIntents(flow_pb2.ListIntentsRequest(),
                                             metadata=auth(s.token))
    assert [i.name for i in listed.intents] == names


async def test_order_status_runs_to_the_end(sb: Harness) -> None:
    s = await session(sb)
    first = await send(sb, s.token, text="I'd like to check my order",
                       intent_name="order_status")
    assert first.status == WAITING and first.wait_token.startswith("wt_")
    assert json_format.MessageToDict(first.expected_input)["kind"] == "text"
    assert first.execution_id and first.conversation_id == s.conversation_id
    done = await send(sb, s.token, wait_token=first.wait_token, text="acm-482913")
    assert done.status == COMPLETED and not done.wait_token
    assert done.execution_id == first.execution_id
    types = [b.type for b in done.blocks]
    assert types[0] == "order_status" and types[-1] == "text"
    status = json_format.MessageToDict(done.blocks[0].payload)
    assert status["status"] == "shipped" and status["carrier"] == "UPS"
    assert status["items"][0]["sku"] == "BCN-100"
    texts = " ".join(b.payload["text"] for b in done.blocks if "text" in b.payload)
    assert "1Z9A4E870312345678" in texts
    execution = await flow_stub(sb).GetExecution(
        flow_pb2.GetExecutionRequest(execution_id=done.execution_id), metadata=auth(s.token))
    assert execution.execution.status == COMPLETED
    assert execution.execution.intent_name == "order_status"


async def test_unknown_order_is_asked_again_three_times_then_handed_off(sb: Harness) -> None:
    s = await session(sb)
    reply = await send(sb, s.token, text="order status please", intent_name="order_status")
    for attempt in range(3):
        reply = await send(sb, s.token, wait_token=reply.wait_token, text="ACM-000000")
        assert reply.status == WAITING, attempt
        assert "couldn't find" in reply.blocks[0].payload["text"]
    reply = await send(sb, s.token, wait_token=reply.wait_token, text="ACM-000000")
    assert reply.status == HANDED_OFF
    handoff = reply.blocks[-1]
    assert handoff.type == "handoff" and handoff.payload["team"] == "support"
    tickets = await sb.core.store.list_tickets(sb.org_id, s.conversation_id)
    assert [t["id"] for t in tickets] == [handoff.payload["ticket_id"]]
    # The conversation waits for a person in the operators' queue (docs/handoff.md).
    waiting = await sb.core.store.get_handoff(sb.org_id, s.conversation_id)
    assert waiting is not None and waiting.state == "waiting"
    assert waiting.ticket_id == handoff.payload["ticket_id"]


async def test_input_mismatch_keeps_the_wait_usable(sb: Harness) -> None:
    s = await session(sb)
    first = await send(sb, s.token, text="demo please", intent_name="book_demo")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await send(sb, s.token, wait_token=first.wait_token, text="not an email")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(err.value)
    assert info.reason == "input_mismatch"
    assert json.loads(info.metadata["details_json"])["expected_input"] == {"kind": "email"}
    second = await send(sb, s.token, wait_token=first.wait_token, text="ana@example.com")
    assert second.status == WAITING
    options = json_format.MessageToDict(second.expected_input)["options"]
    assert [o["value"] for o in options] == ["1-10", "11-50", "51+"]
    # Choices accept the label or the value, case-insensitively; stored as the value.
    last = await send(sb, s.token, wait_token=second.wait_token, input="more than 50")
    assert last.status == HANDED_OFF
    assert any("account executive" in b.payload["text"] for b in last.blocks)


async def test_a_wait_token_runs_once(sb: Harness) -> None:
    s = await session(sb)
    first = await send(sb, s.token, text="x", intent_name="order_status")
    await send(sb, s.token, wait_token=first.wait_token, text="ACM-482913")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await send(sb, s.token, wait_token=first.wait_token, text="ACM-482913")
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(err.value).reason == "wait_already_used"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await send(sb, s.token, wait_token="wt_nope", text="ACM-482913")
    assert error_info(err.value).reason == "wait_not_found"


async def test_wait_token_of_another_conversation_is_not_found(sb: Harness) -> None:
    a, b = await session(sb), await session(sb)
    first = await send(sb, a.token, text="x", intent_name="order_status")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await send(sb, b.token, wait_token=first.wait_token, text="ACM-482913")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_wait_expiry_boundary(clocked: tuple[Harness, FixedClock]) -> None:
    sb, clock = clocked
    s = await session(sb)
    ok = await send(sb, s.token, text="x", intent_name="order_status")
    late = await send(sb, s.token, text="x", intent_name="order_status")
    clock.advance(limits.WAIT_TTL_S - 1)
    # The session is long gone: a new one for the same conversation continues the wait.
    again = await session(sb, conversation_id=s.conversation_id)
    assert again.conversation_id == s.conversation_id
    assert (await send(sb, again.token, wait_token=ok.wait_token,
                       text="ACM-482913")).status == COMPLETED
    clock.advance(1)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await send(sb, again.token, wait_token=late.wait_token, text="ACM-482913")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(err.value).reason == "wait_expired"


async def test_session_expiry_boundary(clocked: tuple[Harness, FixedClock]) -> None:
    sb, clock = clocked
    s = await session(sb)
    clock.advance(limits.SESSION_TTL_S - 1)
    await send(sb, s.token, text="x", intent_name="order_status")
    clock.advance(1)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await send(sb, s.token, text="x", intent_name="order_status")
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(err.value).reason == "session_expired"


@pytest.mark.parametrize("tamper", [
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature
    lambda t: t.replace("sess_", "sess_e"),  # payload
    lambda t: "sess_garbage",
])
async def test_tampered_session_is_unauthenticated(sb: Harness, tamper: Any) -> None:
    s = await session(sb)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await send(sb, tamper(s.token), text="x", intent_name="order_status")
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_api_keys_cannot_send_flow_messages(sb: Harness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await send(sb, SECRET, text="x", intent_name="order_status")
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_unknown_intent_names_the_allowed_ones(sb: Harness) -> None:
    s = await session(sb)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await send(sb, s.token, text="x", intent_name="launch_rocket")
    info = error_info(err.value)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.reason == "intent_not_found"
    allowed = json.loads(info.metadata["details_json"])["allowed_intents"]
    assert {"order_status", "book_demo"} <= set(allowed)


@pytest.mark.parametrize(("variables", "field", "code"), [
    ({f"k{i}": i for i in range(limits.MAX_VARIABLES + 1)}, "variables", "too_many_keys"),
    ({"a": "x" * (limits.MAX_VARIABLES_JSON_BYTES - 7)}, "variables", "too_large"),
    ({"Bad-Key": 1}, "variables.Bad-Key", "invalid_key"),
    ({"profile": {"vip": True}}, "variables.profile", "object_value"),
    ({"deep": [[[[[1]]]]]}, "variables.deep", "too_deep"),
])
async def test_variable_rules_over_grpc(sb: Harness, variables: dict[str, Any], field: str,
                                        code: str) -> None:
    s = await session(sb)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await send(sb, s.token, text="x", intent_name="order_status", variables=variables)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(err.value)
    assert info.reason == "invalid_input"
    violations = json.loads(info.metadata["details_json"])["violations"]
    assert {"field": field, "code": code} == {k: violations[0][k] for k in ("field", "code")}


async def test_accepted_variables_are_stored_and_untrusted(sb: Harness) -> None:
    await sb.apply_agent("""
        name: Echo
        slug: echo-flow
        provider: {kind: scripted}
        flows:
          echo:
            description: Echo a variable.
            steps:
              - say: "Hi {{variables.name}}, total {{variables.cart_total}}"
    """)
    s = await session(sb, agent="echo-flow")
    reply = await send(sb, s.token, text="x", intent_name="echo",
                       variables={"name": "{{secret}} <b>Bo</b>", "cart_total": 129,
                                  "tags": ["vip", ["a", ["b", ["c"]]]]})
    block = reply.blocks[0]
    # Substituted once, never re-expanded, never turned into markup: plain text.
    assert block.payload["text"] == "Hi {{secret}} <b>Bo</b>, total 129"
    assert block.meta["format"] == "plain" and block.meta["untrusted"] is True
    conversation = await sb.core.store.get_conversation(sb.org_id, s.conversation_id)
    assert conversation is not None
    assert conversation.variables["cart_total"] == 129
    assert conversation.variables["tags"] == ["vip", ["a", ["b", ["c"]]]]


def _linear_flow(steps: int) -> str:
    says = "\n".join(f"              - say: step {i}" for i in range(steps - 1))
    return f"""
        name: Long
        slug: long-flow
        provider: {{kind: scripted}}
        flows:
          long:
            steps:
{says}
              - end: done
    """


@pytest.mark.parametrize(("steps", "status"), [
    (limits.MAX_STEPS_PER_EXECUTION, COMPLETED),
    (limits.MAX_STEPS_PER_EXECUTION + 1, FAILED),
])
async def test_step_limit_boundary(sb: Harness, steps: int, status: int) -> None:
    await sb.apply_agent(_linear_flow(steps))
    s = await session(sb, agent="long-flow")
    reply = await send(sb, s.token, text="go", intent_name="long")
    assert reply.status == status
    if status == FAILED:
        assert reply.blocks[-1].type == "error"
        assert reply.blocks[-1].payload["code"] == "step_limit"


async def test_loops_stop_at_the_step_limit(sb: Harness) -> None:
    await sb.apply_agent("""
        name: Loop
        slug: loop-flow
        provider: {kind: scripted}
        flows:
          loop:
            steps:
              - id: again
                set: {n: {add: 1}}
              - branch:
                  - when: {var: n, gte: 0}
                    goto: again
    """)
    s = await session(sb, agent="loop-flow")
    reply = await send(sb, s.token, text="go", intent_name="loop")
    assert reply.status == FAILED
    execution = await flow_stub(sb).GetExecution(
        flow_pb2.GetExecutionRequest(execution_id=reply.execution_id), metadata=auth(s.token))
    assert execution.execution.steps_run == limits.MAX_STEPS_PER_EXECUTION


async def test_wait_token_resumes_after_a_restart(tmp_path: Path) -> None:
    database = str(tmp_path / "restart.db")
    first = await Harness.start(tmp_path, database=database)
    try:
        s = await session(first)
        waiting = await send(first, s.token, text="x", intent_name="order_status")
    finally:
        await first.stop()
    second = await Harness.start(tmp_path, database=database)
    try:
        # Same session token (the signing secret is stored) and the stored wait.
        done = await send(second, s.token, wait_token=waiting.wait_token, text="ACM-731055")
        assert done.status == COMPLETED
        assert done.execution_id == waiting.execution_id
        assert done.blocks[0].payload["status"] == "processing"
    finally:
        await second.stop()


async def test_flow_turns_are_in_the_transcript_with_priced_usage(sb: Harness) -> None:
    await Pricing(sb.core.store).lookup(sb.org_id, "x")  # the table is reachable
    await sb.core.store.set_model_price(  # type: ignore[attr-defined]
        sb.org_id, ModelPrice("my-model", 2_500_000, 10_000_000), sb.core.clock.now())
    s = await session(sb)
    usage = chat_pb2.ReportedUsage(prompt_tokens=1234, completion_tokens=567,
                                   total_tokens=1801, model="my-model")
    reply = await send(sb, s.token, text="check my order", intent_name="order_status",
                       token_usage=usage)
    # 1234 * 2.50 / 1M + 567 * 10.00 / 1M = 0.003085 + 0.005670 USD
    assert reply.token_usage.cost_micros == 8755
    assert reply.token_usage.total_tokens == 1801 and reply.token_usage.model == "my-model"
    listed = await sb.chat.ListMessages(
        chat_pb2.ListMessagesRequest(conversation_id=s.conversation_id), metadata=auth())
    assert [m.role for m in listed.messages] == ["user", "assistant"]
    assert listed.messages[0].content == "check my order"
    assert "order number" in listed.messages[1].content
    assert listed.messages[1].usage.cost_micros == 8755


async def test_llm_step_uses_the_agents_provider_and_prices_it(sb: Harness) -> None:
    await sb.core.store.set_model_price(  # type: ignore[attr-defined]
        sb.org_id, ModelPrice("kb", 1_000_000, 2_000_000), sb.core.clock.now())
    s = await session(sb)
    reply = await send(sb, s.token, text="How do I reset my password?",
                       intent_name="product_question")
    assert reply.status == COMPLETED
    answer = reply.blocks[0].payload["text"]
    assert "password" in answer.lower()
    u = reply.token_usage
    assert u.model == "kb" and u.prompt_tokens > 0 and u.completion_tokens > 0
    assert u.cost_micros == (u.prompt_tokens * 1 + u.completion_tokens * 2 + 0)


async def test_agents_apply_reports_flow_errors_by_field(sb: Harness) -> None:
    from core.agents.definition import AgentDefinitionError, parse_agent

    with pytest.raises(AgentDefinitionError) as err:
        parse_agent({
            "name": "Bad", "provider": "scripted",
            "flows": {"Bad Name": {"steps": []},
                      "ok": {"steps": [{"ask": {"text": "?", "into": "input",
                                                "input": {"kind": "colour"}}},
                                       {"say": "x", "next": "nowhere"},
                                       {"tool": {"name": "teleport"}}]}},
        })
    errors = err.value.errors
    assert "flows.Bad Name" in errors
    assert "flows.ok.steps[0].ask.into" in errors
    assert "flows.ok.steps[0].ask.input.kind" in errors
    assert "flows.ok.steps[1].next" in errors
    assert "flows.ok.steps[2].tool.name" in errors


# -- a message outlives its RPC; a broken run is stored as failed ----------------------

SLOW_FLOW = """
    name: Slow
    slug: slow-flow
    provider: {kind: scripted, delay_ms: 150, reply: "thinking about {message} a b c d e f"}
    flows:
      ask_then_think:
        steps:
          - ask: {text: "Your name?", input: {kind: text}, into: name}
          - llm: "Say hi to {{name}}"
          - end: done
"""


async def _turn_statuses(sb: Harness) -> list[str]:
    rows = await sb.core.store.db.fetchall(  # type: ignore[attr-defined]
        "SELECT status FROM turns ORDER BY created_at, first_seq")
    return [str(r[0]) for r in rows]


async def _execution(sb: Harness, token: str, execution_id: str) -> flow_pb2.Execution:
    reply = await flow_stub(sb).GetExecution(
        flow_pb2.GetExecutionRequest(execution_id=execution_id), metadata=auth(token))
    execution: flow_pb2.Execution = reply.execution
    return execution


async def test_a_client_deadline_does_not_cut_the_message_short(sb: Harness) -> None:
    """The client gives up while the llm step runs: the message still completes and is
    stored, and the retry with the same Idempotency-Key replays it (it used to get 409
    wait_already_used, with the execution stuck waiting and the turn left running)."""
    await sb.apply_agent(SLOW_FLOW)
    s = await session(sb, agent="slow-flow")
    first = await send(sb, s.token, text="go", intent_name="ask_then_think")
    request = flow_pb2.SendMessageRequest(wait_token=first.wait_token, text="Bo",
                                          idempotency_key="deadline-1")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await flow_stub(sb).SendMessage(request, metadata=auth(s.token), timeout=0.5)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # Retried at once, while the first attempt still runs: it waits for it and replays it.
    retry = (await flow_stub(sb).SendMessage(request, metadata=auth(s.token))).reply
    assert retry.status == COMPLETED and retry.execution_id == first.execution_id
    assert "thinking about Say hi to Bo" in retry.blocks[0].payload["text"]
    again = (await flow_stub(sb).SendMessage(request, metadata=auth(s.token))).reply
    assert again == retry
    assert (await _execution(sb, s.token, first.execution_id)).status == COMPLETED
    # One run: two turns (start, answer), both completed; one model answer in the transcript.
    assert await _turn_statuses(sb) == ["completed", "completed"]
    listed = await sb.chat.ListMessages(
        chat_pb2.ListMessagesRequest(conversation_id=s.conversation_id), metadata=auth())
    assert [m.role for m in listed.messages] == ["user", "assistant", "user", "assistant"]


async def test_without_idempotency_key_the_message_still_completes(sb: Harness) -> None:
    await sb.apply_agent(SLOW_FLOW)
    s = await session(sb, agent="slow-flow")
    first = await send(sb, s.token, text="go", intent_name="ask_then_think")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await flow_stub(sb).SendMessage(
            flow_pb2.SendMessageRequest(wait_token=first.wait_token, text="Bo"),
            metadata=auth(s.token), timeout=0.5)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    for _ in range(100):
        if (await _execution(sb, s.token, first.execution_id)).status != WAITING:
            break
        await asyncio.sleep(0.05)
    assert (await _execution(sb, s.token, first.execution_id)).status == COMPLETED
    assert await _turn_statuses(sb) == ["completed", "completed"]


@pytest.mark.parametrize("method", ["begin_turn", "commit_turn", "save_execution"])
async def test_a_run_that_breaks_after_the_claim_is_stored_as_failed(
        sb: Harness, monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    """A store failure once the wait is claimed: no turn left running, the execution failed
    with an error block as the reply, replayed for the same Idempotency-Key, and the wait
    token says so (it used to stay claimed with nothing saved)."""
    s = await session(sb)
    first = await send(sb, s.token, text="x", intent_name="order_status")
    store = sb.core.store
    real = getattr(store, method)
    calls = 0

    async def broken(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("disk on fire")
        return await real(*args, **kwargs)

    monkeypatch.setattr(store, method, broken)
    request = flow_pb2.SendMessageRequest(wait_token=first.wait_token, text="ACM-482913",
                                          idempotency_key="broken-1")
    reply = (await flow_stub(sb).SendMessage(request, metadata=auth(s.token))).reply
    monkeypatch.undo()
    assert reply.status == FAILED and not reply.wait_token
    assert reply.blocks[-1].type == "error"
    assert reply.blocks[-1].payload["code"] == "internal_error"
    assert (await _execution(sb, s.token, first.execution_id)).status == FAILED
    statuses = await _turn_statuses(sb)
    assert "running" not in statuses and statuses[0] == "completed"
    assert statuses[1:] == {"begin_turn": [], "commit_turn": ["failed"],
                            "save_execution": ["completed"]}[method]
    again = (await flow_stub(sb).SendMessage(request, metadata=auth(s.token))).reply
    assert again == reply
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await send(sb, s.token, wait_token=first.wait_token, text="ACM-482913")
    assert error_info(err.value).reason == "wait_already_used"
    assert "failed" in (err.value.details() or "")
    # The conversation goes on: a new execution runs normally.
    assert (await send(sb, s.token, text="x", intent_name="order_status")).status == WAITING


# -- sessions act as their key for rate limits -------------------------------------------

async def _limit(sb: Harness, **rate_limit: float) -> None:
    org = await sb.core.store.get_org(sb.org_id)
    assert org is not None
    await sb.core.store.update_org_settings(sb.org_id, replace(
        org.settings, extra={**org.settings.extra, "rate_limit": rate_limit}))


@pytest.mark.parametrize("sessions", [1, 10])
async def test_sessions_share_their_keys_rate_limit(sb: Harness, sessions: int) -> None:
    """Burst 2, refill negligible: a widget key gets 2 messages, through one session or ten
    (each session used to have its own bucket)."""
    tokens = [(await session(sb)).token for _ in range(sessions)]
    await _limit(sb, rps=0.001, burst=2)
    accepted, refused = 0, 0
    for i in range(10):
        try:
            await send(sb, tokens[i % sessions], text="x", intent_name="order_status")
            accepted += 1
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            refused += 1
    assert (accepted, refused) == (2, 8)
    # The same bucket as the key itself.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sb.chat_once("hi", key=WIDGET)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_create_session_is_rate_limited_per_key(sb: Harness) -> None:
    await _limit(sb, rps=0.001, burst=2)
    await session(sb)
    await session(sb)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await session(sb)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(err.value).reason == "rate_limited"
    # Another key has its own bucket.
    assert (await session(sb, key=SECRET)).token


async def test_a_session_token_without_its_key_is_unauthenticated(sb: Harness) -> None:
    """Tokens issued before sessions carried their key (no `k`) are refused: 401."""
    s = await session(sb)
    payload = base64.urlsafe_b64encode(json.dumps({
        "o": sb.org_id, "a": s.agent_id, "c": s.conversation_id,
        "e": int(sb.core.clock.now().timestamp()) + 600,
    }, separators=(",", ":"), sort_keys=True).encode()).rstrip(b"=").decode()
    old = f"sess_{payload}.{sb.core.sessions._sign(payload)}"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await send(sb, old, text="x", intent_name="order_status")
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
