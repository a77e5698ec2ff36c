"""Exactly-once turns, stop versus disconnect, resumable streams, rate limits and budgets
over the core's gRPC API."""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from core.clock import FixedClock
from core.domain import OrgSettings
from core.events import Usage
from core.providers.registry import build_provider
from core.providers.scripted import ScriptedProvider
from harness import WIDGET, Harness, auth, with_engine
from shim.core_client import decode_error
from switchboard.v1 import chat_pb2, events_pb2


async def _provider(sb: Harness, slug: str) -> ScriptedProvider:
    agent = await sb.core.agents.get(sb.org_id, slug)
    assert agent is not None
    provider = build_provider(agent.definition, agent.id)
    assert isinstance(provider, ScriptedProvider)
    return provider


async def _set_org(sb: Harness, **extra: object) -> None:
    org = await sb.core.store.get_org(sb.org_id)
    assert org is not None
    settings = replace(org.settings, extra={**org.settings.extra, **extra})
    await sb.core.store.update_org_settings(sb.org_id, settings)


async def _turn_count(sb: Harness) -> int:
    row = await sb.core.store.db.fetchone("SELECT COUNT(*) FROM turns")  # type: ignore[attr-defined]
    return int(row[0])


async def test_concurrent_duplicates_make_one_turn(sb: Harness) -> None:
    await sb.scripted_agent(reply="exactly once", delay_ms=5)
    provider = await _provider(sb, "scripted")
    before = provider.calls

    async def send() -> bytes:
        reply = await sb.chat_once("pay me once", agent="scripted", idempotency_key="key-1")
        return bytes(reply.SerializeToString())

    replies = await asyncio.gather(*(send() for _ in range(50)))
    assert len(set(replies)) == 1
    assert provider.calls - before == 1
    assert await _turn_count(sb) == 1
    # Once stored, the same key replays the stored result byte for byte.
    again = await send()
    assert again == replies[0]
    assert provider.calls - before == 1


async def test_same_key_different_request_is_rejected(sb: Harness) -> None:
    await sb.scripted_agent(reply="ok")
    await sb.chat_once("first", agent="scripted", idempotency_key="key-2")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sb.chat_once("second", agent="scripted", idempotency_key="key-2")
    assert err.value.code() == grpc.StatusCode.ABORTED
    assert decode_error(err.value).reason == "idempotency_mismatch"


async def test_stop_keeps_partial_text_and_usage(sb: Harness) -> None:
    await sb.scripted_agent(reply=" ".join(f"w{i}" for i in range(300)), delay_ms=10)
    call = sb.chat.StreamChat(
        chat_pb2.StreamChatRequest(turn=chat_pb2.TurnInput(message="go", agent="scripted")),
        metadata=auth(),
    )
    events: list[events_pb2.ChatEvent] = []
    async for reply in call:
        events.append(reply.event)
        if reply.event.HasField("text_delta") and (
            sum(1 for e in events if e.HasField("text_delta")) == 5
        ):
            stop = await sb.chat.StopTurn(
                chat_pb2.StopTurnRequest(conversation_id=events[0].conversation_id),
                metadata=auth(),
            )
            assert stop.stopped
    last = events[-1]
    assert last.HasField("completed")
    assert last.completed.status == events_pb2.TURN_STATUS_STOPPED
    streamed = "".join(e.text_delta.text for e in events if e.HasField("text_delta"))
    assert last.completed.text == streamed and 5 <= len(streamed.split()) < 300
    assert last.completed.usage.completion_tokens > 0
    listed = await sb.chat.ListMessages(
        chat_pb2.ListMessagesRequest(conversation_id=last.conversation_id), metadata=auth()
    )
    stored = next(m for m in listed.messages if m.role == "assistant")
    assert stored.status == events_pb2.TURN_STATUS_STOPPED and stored.content == streamed
    assert stored.usage.completion_tokens > 0


async def test_converse_stop_message(sb: Harness) -> None:
    await sb.scripted_agent(reply="z " * 300, delay_ms=10)
    queue: asyncio.Queue[chat_pb2.ConverseRequest | None] = asyncio.Queue()

    async def requests():  # type: ignore[no-untyped-def]
        while (item := await queue.get()) is not None:
            yield item

    call = sb.chat.Converse(requests(), metadata=auth())
    await queue.put(chat_pb2.ConverseRequest(
        start_turn=chat_pb2.TurnInput(message="go", agent="scripted")))
    status = None
    async for reply in call:
        event = reply.event
        if event.HasField("text_delta") and event.seq == 4:
            await queue.put(chat_pb2.ConverseRequest(
                stop=chat_pb2.StopTurnInput(conversation_id=event.conversation_id)))
        if event.HasField("completed"):
            status = event.completed.status
            await queue.put(None)
    assert status == events_pb2.TURN_STATUS_STOPPED


async def test_disconnect_then_reattach_within_grace_loses_nothing(tmp_path: Path) -> None:
    sb = await Harness.start(tmp_path, engine=with_engine(detach_grace_s=5.0))
    try:
        reply_text = " ".join(f"t{i}" for i in range(60))
        await sb.scripted_agent(reply=reply_text, delay_ms=10)
        call = sb.chat.StreamChat(
            chat_pb2.StreamChatRequest(turn=chat_pb2.TurnInput(message="go", agent="scripted")),
            metadata=auth(),
        )
        first: list[events_pb2.ChatEvent] = []
        async for reply in call:
            first.append(reply.event)
            if len(first) == 6:
                break
        call.cancel()
        await asyncio.sleep(0.2)  # detached, still running
        resumed = sb.chat.ResumeStream(
            chat_pb2.ResumeStreamRequest(conversation_id=first[0].conversation_id,
                                         after_seq=first[-1].seq),
            metadata=auth(),
        )
        rest = [r.event async for r in resumed]
        stitched = first + rest
        assert [e.seq for e in stitched] == list(range(1, len(stitched) + 1))
        text = "".join(e.text_delta.text for e in stitched if e.HasField("text_delta"))
        assert text == reply_text
        assert stitched[-1].completed.status == events_pb2.TURN_STATUS_COMPLETED
    finally:
        await sb.stop()


async def test_grpc_stream_cut_anywhere_and_resumed_equals_uninterrupted(sb: Harness) -> None:
    await sb.scripted_agent(reply=" ".join(f"r{i}" for i in range(40)), delay_ms=2)
    call = sb.chat.StreamChat(
        chat_pb2.StreamChatRequest(turn=chat_pb2.TurnInput(message="go", agent="scripted")),
        metadata=auth(),
    )
    full = [bytes(r.event.SerializeToString()) async for r in call]
    events = [events_pb2.ChatEvent.FromString(b) for b in full]
    conversation = events[0].conversation_id
    rng = random.Random(7)
    for cut in sorted(rng.sample(range(len(events)), 8)):
        resumed = sb.chat.ResumeStream(
            chat_pb2.ResumeStreamRequest(conversation_id=conversation,
                                         after_seq=events[cut].seq),
            metadata=auth(),
        )
        rest = [bytes(r.event.SerializeToString()) async for r in resumed]
        assert full[: cut + 1] + rest == full


async def test_rate_limit_at_twice_the_rate(tmp_path: Path) -> None:
    clock = FixedClock()
    sb = await Harness.start(tmp_path, clock=clock)
    try:
        await sb.scripted_agent(reply="ok")
        rps, burst, seconds = 10.0, 5, 10.0
        await _set_org(sb, rate_limit={"rps": rps, "burst": burst, "max_streams": 10})
        accepted = refused = 0
        retry_afters = []
        for _ in range(int(seconds * rps * 2)):
            clock.advance(1 / (rps * 2))
            try:
                await sb.chat_once("hi", agent="scripted")
                accepted += 1
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                decoded = decode_error(exc)
                assert decoded.reason == "rate_limited"
                assert decoded.retry_after_s is not None
                retry_afters.append(decoded.retry_after_s)
                refused += 1
        expected = burst + rps * seconds
        assert abs(accepted - expected) <= 0.05 * expected
        assert refused == int(seconds * rps * 2) - accepted
        assert all(0 <= r <= 1 / rps + 1e-9 for r in retry_afters), retry_afters
    finally:
        await sb.stop()


async def test_refused_request_writes_nothing(tmp_path: Path) -> None:
    clock = FixedClock()
    sb = await Harness.start(tmp_path, clock=clock)
    try:
        await sb.scripted_agent(reply="ok")
        await _set_org(sb, rate_limit={"rps": 1, "burst": 1})
        await sb.chat_once("one", agent="scripted")
        turns = await _turn_count(sb)
        with pytest.raises(grpc.aio.AioRpcError):
            await sb.chat_once("two", agent="scripted")
        assert await _turn_count(sb) == turns
    finally:
        await sb.stop()


async def test_stream_concurrency_cap(sb: Harness) -> None:
    await sb.scripted_agent(reply="slow " * 100, delay_ms=20)
    await _set_org(sb, rate_limit={"rps": 100, "burst": 100, "max_streams": 2})
    calls = []
    for _ in range(2):
        call = sb.chat.StreamChat(
            chat_pb2.StreamChatRequest(turn=chat_pb2.TurnInput(message="x", agent="scripted")),
            metadata=auth(),
        )
        await call.read()
        calls.append(call)
    third = sb.chat.StreamChat(
        chat_pb2.StreamChatRequest(turn=chat_pb2.TurnInput(message="x", agent="scripted")),
        metadata=auth(),
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await third.read()
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert decode_error(err.value).reason == "concurrency_limited"
    for call in calls:
        call.cancel()


async def test_budget_refusal_makes_no_model_call(sb: Harness) -> None:
    await sb.scripted_agent(reply="word " * 1200)

    async def per_token(org_id: str, usage: Usage) -> Usage:
        return replace(usage, cost_micros=usage.total_tokens)  # 1 micro a token

    sb.core.engine.price = per_token
    provider = await _provider(sb, "scripted")
    await _set_org(sb, budget={"daily_micros": 2500})
    await sb.chat_once("first", agent="scripted")  # estimate ~1001 fits; spends ~1500
    calls, turns = provider.calls, await _turn_count(sb)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sb.chat_once("second", agent="scripted")
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    decoded = decode_error(err.value)
    assert decoded.reason == "budget_exceeded" and decoded.retry_after_s
    assert provider.calls == calls and await _turn_count(sb) == turns
    # Since a day ago, not since midnight: `now().replace(hour=0)` is now itself in the
    # first hour of the day (UTC), which made this test fail between 00:00 and 01:00.
    report = await sb.core.store.usage_report(sb.org_id, sb.core.clock.now() - timedelta(days=1))
    assert report and report[0]["cost_micros"] >= 1200


def test_settings_roundtrip_keeps_extra() -> None:
    settings = OrgSettings(extra={"rate_limit": {"rps": 2}})
    assert OrgSettings.from_json(settings.to_json()).extra == {"rate_limit": {"rps": 2}}


async def test_resume_stream_from_latest_turn(sb: Harness) -> None:
    await sb.scripted_agent(reply="echo {message}")
    first = await sb.chat_once("one", agent="scripted")
    second = await sb.chat_once("two", conversation_id=first.conversation_id)
    resumed = sb.chat.ResumeStream(
        chat_pb2.ResumeStreamRequest(conversation_id=first.conversation_id, latest_turn=True),
        metadata=auth(),
    )
    events = [r.event async for r in resumed]
    assert {e.turn_id for e in events} == {second.turn_id}
    assert events[0].HasField("turn_started") and events[-1].completed.text == "echo two"


async def test_concurrent_turns_on_one_conversation_never_share_sequence_numbers(
    sb: Harness,
) -> None:
    await sb.scripted_agent(reply="slow reply " * 5, delay_ms=5)
    first = await sb.chat_once("start", agent="scripted")

    async def send(i: int) -> str:
        try:
            await sb.chat_once(f"m{i}", conversation_id=first.conversation_id)
            return "ok"
        except grpc.aio.AioRpcError as exc:
            assert decode_error(exc).reason == "turn_in_progress"
            return "busy"

    outcomes = await asyncio.gather(*(send(i) for i in range(10)))
    assert outcomes.count("ok") >= 1
    resumed = sb.chat.ResumeStream(
        chat_pb2.ResumeStreamRequest(conversation_id=first.conversation_id), metadata=auth()
    )
    seqs = [r.event.seq async for r in resumed]
    assert seqs == list(range(1, len(seqs) + 1))
    completed = await sb.chat.ListMessages(
        chat_pb2.ListMessagesRequest(conversation_id=first.conversation_id), metadata=auth()
    )
    assert sum(1 for m in completed.messages if m.role == "assistant") == 1 + outcomes.count("ok")


async def test_clients_leaving_mid_start_leave_nothing_half_done(sb: Harness) -> None:
    """Deadlines of a few milliseconds cancel handlers at every await of a turn's start
    (inside BEGIN, between the write and the registration, ...). Afterwards the store
    still takes writes, no conversation is stuck "in progress", and stop never hangs."""
    await sb.scripted_agent(reply="ok")
    await _set_org(sb, rate_limit={"rps": 1e6, "burst": 10**6})
    first = await sb.chat_once("start", agent="scripted")
    rng = random.Random(1)
    for _ in range(150):
        with contextlib.suppress(grpc.aio.AioRpcError):
            await sb.chat.Chat(
                chat_pb2.ChatRequest(turn=chat_pb2.TurnInput(
                    message="hi", conversation_id=first.conversation_id)),
                metadata=auth(), timeout=rng.uniform(0.0005, 0.006),
            )
    # Starts the clients abandoned still finish (shielded) and run their turns to the end.
    for _ in range(100):
        await asyncio.sleep(0.05)
        if not sb.core.engine.live.all():
            break
    assert not sb.core.engine.live.all()
    reply = await sb.chat_once("after", conversation_id=first.conversation_id)
    assert reply.completed.text == "ok"
    stop = await sb.chat.StopTurn(
        chat_pb2.StopTurnRequest(conversation_id=first.conversation_id), metadata=auth(),
        timeout=5,
    )
    assert not stop.stopped


async def test_a_key_is_free_again_after_its_window(tmp_path: Path) -> None:
    clock = FixedClock()
    sb = await Harness.start(tmp_path, clock=clock)
    try:
        await sb.scripted_agent(reply="echo {message}")
        first = await sb.chat_once("hello", agent="scripted", idempotency_key="k-window")
        clock.advance(24 * 3600 + 1)
        again = await sb.chat_once("hello", agent="scripted", idempotency_key="k-window")
        assert again.turn_id != first.turn_id and again.completed.text == "echo hello"
    finally:
        await sb.stop()


async def test_a_key_left_by_a_crashed_turn_names_a_new_turn(tmp_path: Path) -> None:
    sb = await Harness.start(tmp_path)
    try:
        await sb.scripted_agent(reply="echo {message}")
        # What a process that died mid-turn leaves: the turn row, recovered as cancelled,
        # with no events.
        reply = await sb.chat_once("hello", agent="scripted", idempotency_key="k-crash")
        await sb.core.store.db.execute(  # type: ignore[attr-defined]
            "DELETE FROM event_log WHERE turn_id = ?", (reply.turn_id,))
        await sb.core.store.db.execute(  # type: ignore[attr-defined]
            "UPDATE turns SET status = 'cancelled' WHERE id = ?", (reply.turn_id,))
        retry = await sb.chat_once("hello", agent="scripted", idempotency_key="k-crash")
        assert retry.turn_id != reply.turn_id and retry.completed.text == "echo hello"
    finally:
        await sb.stop()


@pytest.mark.parametrize("field", ["agent", "conversation_id"])
async def test_reference_length_boundary(sb: Harness, field: str) -> None:
    from core import limits

    for length, code in ((limits.MAX_REFERENCE_CHARS, grpc.StatusCode.NOT_FOUND),
                         (limits.MAX_REFERENCE_CHARS + 1, grpc.StatusCode.INVALID_ARGUMENT)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await sb.chat_once("x", **{field: "a" * length})
        assert err.value.code() == code


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
async def test_non_json_numbers_over_grpc_are_invalid(sb: Harness, value: float) -> None:
    await sb.scripted_agent(reply="ok")
    turn = chat_pb2.TurnInput(message="x", agent="scripted")
    turn.custom_fields.update({"n": value})
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sb.chat.Chat(chat_pb2.ChatRequest(turn=turn), metadata=auth())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("token", ["-1", str(2**63), "abc"])
async def test_bad_page_tokens_are_invalid(sb: Harness, token: str) -> None:
    await sb.scripted_agent(reply="ok")
    reply = await sb.chat_once("x", agent="scripted")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sb.chat.ListMessages(chat_pb2.ListMessagesRequest(
            conversation_id=reply.conversation_id, page_token=token), metadata=auth())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_keys_are_scoped_to_the_caller(sb: Harness) -> None:
    """The same key from another API key is another turn, never the first caller's."""
    await sb.scripted_agent(reply="echo {message}")
    mine = await sb.chat_once("my order 123", agent="scripted", idempotency_key="k-scope")
    other = await sb.chat_once("my order 123", agent="scripted", idempotency_key="k-scope",
                               key=WIDGET)
    assert other.conversation_id != mine.conversation_id
