"""Webhooks out, end to end over real sockets: a core (with its dispatcher) and a local
receiver on an ephemeral port that verifies every signature. Time is a FixedClock the
tests move, and jitter is fixed, so retries over minutes and hours run at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from webhook_receiver import Receiver

from core.clock import FixedClock
from core.domain import ConversationRecord, TurnRecord
from core.observability.metrics import REGISTRY
from core.outbox.deliveries import (
    DELIVERED,
    DELIVERY_LOG_RETENTION_DAYS,
    FAILED,
    PENDING,
    RETRY_FIRST_DELAY_S,
    RETRY_WINDOW_S,
)
from core.outbox.dispatcher import MAX_CONCURRENT_DELIVERIES
from core.outbox.endpoints import WebhookEndpoint
from core.outbox.events import (
    CONVERSATION_CREATED,
    MESSAGE_CREATED,
    TURN_COMPLETED,
)
from core.store.base import TurnBegin
from harness import Harness

SECRET = "whsec_" + "k" * 40
FIRST_TURN = [CONVERSATION_CREATED, MESSAGE_CREATED, MESSAGE_CREATED, TURN_COMPLETED]
NEXT_TURN = [MESSAGE_CREATED, MESSAGE_CREATED, TURN_COMPLETED]


def _attempts(outcome: str) -> float:
    return REGISTRY.get_sample_value("switchboard_event_webhook_attempts_total",
                                     {"outcome": outcome}) or 0.0


@dataclass
class Setup:
    sb: Harness
    clock: FixedClock
    receiver: Receiver

    async def endpoint(self, events: tuple[str, ...] = (), endpoint_id: str = "we_1",
                       url: str = "") -> WebhookEndpoint:
        endpoint = WebhookEndpoint(endpoint_id, self.sb.org_id, url or self.receiver.url,
                                   SECRET, events, self.clock.now())
        await self.sb.core.store.create_webhook(endpoint)
        return endpoint

    async def chat(self, message: str, conversation_id: str = "") -> str:
        reply = await self.sb.chat_once(message, agent="scripted",
                                        conversation_id=conversation_id)
        assert reply.completed.text
        return reply.conversation_id

    async def settle(self) -> None:
        await asyncio.wait_for(self.sb.core.webhooks.settle(), 30)

    async def until_delivered(self, count: int, step_s: float, max_steps: int) -> None:
        """Move the clock `step_s` at a time (letting every due retry run in between)
        until the receiver has `count` distinct events."""
        for _ in range(max_steps):
            await self.settle()
            if len(self.receiver.events) >= count:
                return
            self.clock.advance(step_s)
        raise AssertionError(f"{len(self.receiver.events)} of {count} events delivered")


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    clock = FixedClock()
    receiver = Receiver(SECRET, lambda: int(clock.now().timestamp()))
    await receiver.start()
    sb = await Harness.start(tmp_path, clock=clock)
    sb.core.webhooks.rng = lambda: 0.0  # no jitter: retries at exactly 10 s, 20 s, ...
    await sb.scripted_agent()
    try:
        yield Setup(sb, clock, receiver)
    finally:
        if receiver.hang is not None:
            receiver.hang.set()
        await sb.stop()
        await receiver.stop()


async def test_a_turn_sends_its_events_signed_and_in_order(setup: Setup) -> None:
    await setup.endpoint()
    conversation = await setup.chat("hello")
    await setup.settle()
    assert setup.receiver.types() == FIRST_TURN
    assert not setup.receiver.rejected  # every signature verified
    created, user, assistant, done = setup.receiver.events.values()
    assert created["data"]["conversation"]["id"] == conversation
    assert created["org_id"] == setup.sb.org_id
    assert created["created"] == int(setup.clock.now().timestamp())
    assert (user["data"]["message"]["role"], user["data"]["message"]["content"]) == (
        "user", "hello")
    assert assistant["data"]["message"]["role"] == "assistant"
    turn = done["data"]["turn"]
    assert turn["status"] == "completed" and turn["conversation_id"] == conversation
    assert turn["message_id"] == assistant["data"]["message"]["id"]
    assert turn["text"] == assistant["data"]["message"]["content"]
    assert all(e["id"].startswith("evt_") for e in setup.receiver.events.values())
    assert len(set(setup.receiver.events)) == 4

    await setup.chat("again", conversation)
    await setup.settle()
    assert setup.receiver.types() == FIRST_TURN + NEXT_TURN
    log = await setup.sb.core.store.list_deliveries(setup.sb.org_id, 100)
    assert [d.status for d in log] == [DELIVERED] * 7
    assert [d.event_id for d in reversed(log)] == list(setup.receiver.events)


async def test_an_endpoint_gets_only_the_types_it_subscribed_to(setup: Setup) -> None:
    other = Receiver(SECRET, setup.receiver.now)
    await other.start()
    try:
        await setup.endpoint((TURN_COMPLETED,), "we_turns")
        await setup.endpoint((CONVERSATION_CREATED, MESSAGE_CREATED), "we_msgs", other.url)
        await setup.chat("hello")
        await setup.settle()
        assert setup.receiver.types() == [TURN_COMPLETED]
        assert other.types() == [CONVERSATION_CREATED, MESSAGE_CREATED, MESSAGE_CREATED]
    finally:
        await other.stop()


async def test_without_endpoints_nothing_is_stored_or_sent(setup: Setup) -> None:
    await setup.chat("hello")
    await setup.settle()
    assert await setup.sb.core.store.list_deliveries(setup.sb.org_id, 100) == []
    assert setup.sb.core.webhooks.attempts == 0


async def test_a_receiver_with_another_secret_refuses_and_the_event_is_retried(
        setup: Setup) -> None:
    await setup.endpoint(url=setup.receiver.url)
    # The receiver holds another secret: what it gets does not verify, and is refused.
    setup.receiver.secret = "whsec_" + "x" * 40
    await setup.chat("hello")
    await setup.settle()
    assert setup.receiver.events == {}
    assert setup.receiver.rejected and "does not match" in setup.receiver.rejected[0]
    log = await setup.sb.core.store.list_deliveries(setup.sb.org_id, 100)
    oldest = log[-1]
    assert (oldest.event_type, oldest.status, oldest.last_status) == (
        CONVERSATION_CREATED, PENDING, 400)
    assert oldest.next_attempt_at is not None
    # The conversation's later events wait behind it, untried.
    assert {(d.status, d.attempts) for d in log[:-1]} == {(PENDING, 0)}


async def test_a_receiver_down_for_a_minute_then_back_gets_every_event_once(
        setup: Setup) -> None:
    await setup.endpoint()
    await setup.receiver.stop()
    first = await setup.chat("one")
    second = await setup.chat("two")  # another conversation, interleaved with the first
    await setup.chat("three", first)
    await setup.settle()
    for _ in range(12):  # a minute of refused connections
        setup.clock.advance(5)
        await setup.settle()
    log = await setup.sb.core.store.list_deliveries(setup.sb.org_id, 100)
    assert {d.status for d in log} == {PENDING}
    # Only the first event of each conversation was tried: the others wait their turn.
    tried = [d for d in log if d.attempts]
    assert len(tried) == 2 and all(d.event_type == CONVERSATION_CREATED for d in tried)
    assert all(d.attempts == 3 for d in tried)  # at 0 s, 10 s and 30 s (rng 0; next: 70 s)
    assert all("Connect" in d.last_error for d in tried)

    await setup.receiver.start()  # back, on the same port
    setup.receiver.fail_first_attempt = True  # and every event arrives twice on the wire
    await setup.until_delivered(len(FIRST_TURN) * 2 + len(NEXT_TURN), RETRY_FIRST_DELAY_S,
                                200)
    assert len(setup.receiver.wire) == 2 * len(setup.receiver.events)  # at least once...
    assert len(set(setup.receiver.wire)) == len(setup.receiver.events)  # ...once per id
    log = await setup.sb.core.store.list_deliveries(setup.sb.org_id, 100)
    assert {d.status for d in log} == {DELIVERED} and len(log) == 11
    by_conversation: dict[str, list[str]] = {}
    for event in setup.receiver.events.values():
        data = event["data"]
        cid = (data.get("conversation") or data.get("message") or data["turn"])
        key = cid.get("conversation_id", cid.get("id"))
        by_conversation.setdefault(key, []).append(event["type"])
    assert by_conversation == {first: FIRST_TURN + NEXT_TURN, second: FIRST_TURN}
    # In order on the wire too: an event is never sent before the one ahead of it in its
    # conversation was accepted (each id arrives twice in a row: refused, then accepted).
    written = [d.event_id for d in reversed(log)]
    for cid in (first, second):
        ids = [d.event_id for d in reversed(log) if d.conversation_id == cid]
        arrivals = [i for i in setup.receiver.wire if i in ids]
        assert arrivals == [i for i in ids for _ in range(2)]
    assert sorted(written) == sorted(setup.receiver.events)


async def test_a_slow_receiver_never_slows_a_turn(setup: Setup) -> None:
    setup.sb.core.webhooks.timeout_s = 600.0  # the receiver hangs; the attempt waits
    await setup.endpoint()
    setup.receiver.hang = asyncio.Event()
    conversation = await setup.chat("one")
    await asyncio.wait_for(setup.receiver.arrived.wait(), 10)
    assert setup.receiver.hanging == 1
    # The receiver holds the first event's request open; turns go on regardless.
    await setup.chat("two", conversation)
    await setup.chat("three")
    assert setup.receiver.hanging >= 1 and setup.receiver.events == {}
    setup.receiver.hang.set()
    await setup.settle()
    assert setup.receiver.types().count(TURN_COMPLETED) == 3
    ordered = [e["type"] for e in setup.receiver.events.values()
               if conversation in str(e["data"])]
    assert ordered == FIRST_TURN + NEXT_TURN


async def test_a_receiver_that_keeps_failing_is_given_up_after_a_day(setup: Setup) -> None:
    given_up_before = _attempts("failed")
    await setup.endpoint((CONVERSATION_CREATED, TURN_COMPLETED))
    setup.receiver.answer = 503
    conversation = await setup.chat("one")
    store = setup.sb.core.store
    start = setup.clock.now()
    await setup.settle()
    created, done = reversed(await store.list_deliveries(setup.sb.org_id, 10))
    setup.receiver.refuse, setup.receiver.answer = {created.event_id}, 200
    for _ in range(100):
        await setup.settle()
        first = (await store.list_deliveries(setup.sb.org_id, 10))[-1]
        if first.status != PENDING:
            break
        assert first.next_attempt_at is not None
        setup.clock.advance((first.next_attempt_at - setup.clock.now()).total_seconds())
    assert first.status == FAILED and first.last_status == 503
    assert first.next_attempt_at is None
    assert (setup.clock.now() - start).total_seconds() == RETRY_WINDOW_S
    # 10 s doubling to an hour, then hourly, then one last attempt at the window's end.
    assert first.attempts == 33
    assert _attempts("failed") == given_up_before + 1  # the metric operators alert on
    # Given up, the conversation's next event goes out (once: its own window is over too).
    await setup.settle()
    assert setup.receiver.types() == [TURN_COMPLETED]
    assert setup.receiver.events[done.event_id]["data"]["turn"]["conversation_id"] == (
        conversation)


async def test_at_most_max_concurrent_deliveries_are_in_flight(setup: Setup) -> None:
    dispatcher = setup.sb.core.webhooks
    dispatcher.timeout_s = 600.0
    await setup.endpoint((CONVERSATION_CREATED,))
    setup.receiver.hang = asyncio.Event()
    for n in range(MAX_CONCURRENT_DELIVERIES + 1):  # one conversation (one queue) each
        await setup.chat(f"hello {n}")
    for _ in range(600):  # bounded: until the dispatcher has filled every slot
        if setup.receiver.hanging == MAX_CONCURRENT_DELIVERIES:
            break
        await asyncio.sleep(0.01)
    # Another pass over the store claims nothing while every slot is taken.
    await asyncio.wait_for(dispatcher.next_pass(), 30)
    assert setup.receiver.hanging == MAX_CONCURRENT_DELIVERIES
    assert len(set(setup.receiver.wire)) == MAX_CONCURRENT_DELIVERIES
    setup.receiver.hang.set()
    await setup.settle()
    assert len(setup.receiver.events) == MAX_CONCURRENT_DELIVERIES + 1


async def test_a_receiver_answering_after_the_timeout_gets_the_event_again(
        setup: Setup) -> None:
    setup.sb.core.webhooks.timeout_s = 0.2
    await setup.endpoint((TURN_COMPLETED,))
    setup.receiver.hang = asyncio.Event()  # holds the request past the dispatcher's timeout
    await setup.chat("hello")
    await setup.settle()
    [d] = await setup.sb.core.store.list_deliveries(setup.sb.org_id, 10)
    assert (d.status, d.attempts, d.last_error) == (PENDING, 1, "no answer within 0.2s")
    setup.receiver.hang.set()  # the late answer: the receiver handled it...
    await asyncio.sleep(0)
    setup.clock.advance(RETRY_FIRST_DELAY_S)
    await setup.settle()  # ...and gets it again, with the same id
    [d] = await setup.sb.core.store.list_deliveries(setup.sb.org_id, 10)
    assert (d.status, d.attempts) == (DELIVERED, 2)
    assert setup.receiver.wire == [d.event_id, d.event_id]
    assert list(setup.receiver.events) == [d.event_id]


async def test_the_delivery_log_keeps_thirty_days(setup: Setup) -> None:
    await setup.endpoint((TURN_COMPLETED,))
    await setup.chat("hello")
    await setup.settle()
    store = setup.sb.core.store
    assert len(await store.list_deliveries(setup.sb.org_id, 10)) == 1
    setup.clock.advance(DELIVERY_LOG_RETENTION_DAYS * 86400 - 3600)
    await asyncio.wait_for(setup.sb.core.webhooks.next_pass(), 30)
    assert len(await store.list_deliveries(setup.sb.org_id, 10)) == 1
    setup.clock.advance(3601)
    await asyncio.wait_for(setup.sb.core.webhooks.next_pass(), 30)
    assert await store.list_deliveries(setup.sb.org_id, 10) == []


async def test_a_turn_a_crash_left_running_is_reported_failed(tmp_path: Path) -> None:
    clock = FixedClock()
    receiver = Receiver(SECRET, lambda: int(clock.now().timestamp()))
    await receiver.start()
    database = str(tmp_path / "switchboard.db")
    first = await Harness.start(tmp_path, clock=clock, database=database)
    try:
        await first.core.store.create_webhook(WebhookEndpoint(
            "we_1", first.org_id, receiver.url, SECRET, (TURN_COMPLETED,), clock.now()))
        # A turn a process began and never finished (it died before the commit).
        running = TurnRecord("t-crashed", "c-crashed", first.org_id, "running", "agent", 0,
                             0, clock.now(), clock.now())
        await first.core.store.begin_turn(TurnBegin(turn=running, new_conversation=(
            ConversationRecord("c-crashed", first.org_id, "agent", "u", "open", 0,
                               clock.now(), clock.now()))))
    finally:
        await first.stop()
    again = await Harness.start(tmp_path, clock=clock, database=database)  # recovers it
    try:
        await asyncio.wait_for(again.core.webhooks.settle(), 30)
        [done] = receiver.events.values()
        turn = done["data"]["turn"]
        assert (turn["id"], turn["status"], turn["error"]["reason"]) == (
            "t-crashed", "failed", "turn_incomplete")
    finally:
        await again.stop()
        await receiver.stop()
