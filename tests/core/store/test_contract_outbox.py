"""Store contract: webhook endpoints, the outbox written inside a change's transaction,
claims of due deliveries (leases, order per conversation per endpoint), the log."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest
from store_contract import T0, conversation, later, make_org, turn

from core.clock import SequentialIds
from core.domain import MessageRecord
from core.events import Completed
from core.outbox import events as ev
from core.outbox.deliveries import (
    CANCELLED,
    DELIVERED,
    FAILED,
    MAX_LISTED_DELIVERIES,
    PENDING,
    RETRY_WINDOW_S,
    AttemptResult,
)
from core.outbox.endpoints import MAX_ENDPOINTS_PER_ORG, EndpointError, WebhookEndpoint
from core.store.base import Store, TurnBegin, TurnCommit, TurnConflict
from core.store.factory import open_store

IDS = SequentialIds()
LEASE = later(60)


def endpoint(org_id: str, endpoint_id: str, events: tuple[str, ...] = (),
             at_s: float = 0) -> WebhookEndpoint:
    return WebhookEndpoint(endpoint_id, org_id, f"https://hooks.example/{endpoint_id}",
                           "s" * 32, events, later(at_s))


def handoffs(org_id: str, conversation_id: str) -> list[ev.OutboxEvent]:
    """The four handoff/close events, as the handoff transitions will append them."""
    return [
        ev.handoff_requested(IDS, org_id, conversation_id, later(1), reason="livehelp",
                             team="support"),
        ev.handoff_claimed(IDS, org_id, conversation_id, later(2), operator="ada"),
        ev.handoff_released(IDS, org_id, conversation_id, later(3), operator="ada"),
        ev.conversation_closed(IDS, org_id, conversation_id, later(4)),
    ]


def message(org_id: str, conversation_id: str, turn_id: str, role: str) -> MessageRecord:
    return MessageRecord(IDS.uuid(), conversation_id, org_id, turn_id, role, "hi",
                         "completed", T0)


async def test_endpoints_are_kept_per_organisation(store: Store) -> None:
    await make_org(store, "o1")
    await make_org(store, "o2")
    a = endpoint("o1", "we_a", (ev.TURN_COMPLETED, ev.MESSAGE_CREATED))
    b = endpoint("o1", "we_b", at_s=1)
    await store.create_webhook(a)
    await store.create_webhook(b)
    assert await store.list_webhooks("o1") == [a, b]
    assert await store.list_webhooks("o2") == []
    assert await store.get_webhook("o1", "we_a") == a
    assert await store.get_webhook("o2", "we_a") is None  # another tenant's id: not found
    assert not await store.remove_webhook("o2", "we_a", later(5))
    assert await store.remove_webhook("o1", "we_a", later(5))
    assert not await store.remove_webhook("o1", "we_a", later(6))
    assert await store.list_webhooks("o1") == [b]
    assert await store.get_webhook("o1", "we_a") is None


async def test_an_organisation_has_at_most_max_endpoints(store: Store) -> None:
    await make_org(store, "o1")
    for n in range(MAX_ENDPOINTS_PER_ORG):
        await store.create_webhook(endpoint("o1", f"we_{n}"))
    with pytest.raises(EndpointError):
        await store.create_webhook(endpoint("o1", "we_one_more"))
    await store.remove_webhook("o1", "we_0", later(1))
    await store.create_webhook(endpoint("o1", "we_one_more"))  # room again
    assert len(await store.list_webhooks("o1")) == MAX_ENDPOINTS_PER_ORG


async def test_a_turn_writes_its_events_with_it_for_subscribed_endpoints(store: Store) -> None:
    await make_org(store, "o1")
    await store.create_webhook(endpoint("o1", "we_all"))
    await store.create_webhook(endpoint("o1", "we_turns", (ev.TURN_COMPLETED,)))
    c = conversation("o1", "c1")
    user = message("o1", "c1", "t1", "user")
    began = [ev.conversation_created(IDS, c), ev.message_created(IDS, user)]
    t = await store.begin_turn(TurnBegin(turn=turn("o1", "c1", "t1"), new_conversation=c,
                                         user_message=user, outbox=tuple(began)))
    reply = message("o1", "c1", "t1", "assistant")
    ended = [ev.message_created(IDS, reply), ev.turn_completed(
        IDS, "o1", "c1", "t1", "completed", Completed("hi", message_id=reply.id), later(1))]
    await store.commit_turn(TurnCommit("t1", "c1", "completed", t.first_seq, later(1),
                                       messages=(reply,), outbox=tuple(ended)))
    log = list(reversed(await store.list_deliveries("o1", 100)))
    assert [(d.endpoint_id, d.event_type) for d in log] == [
        ("we_all", ev.CONVERSATION_CREATED), ("we_all", ev.MESSAGE_CREATED),
        ("we_all", ev.MESSAGE_CREATED), ("we_all", ev.TURN_COMPLETED),
        ("we_turns", ev.TURN_COMPLETED),
    ]
    assert [d.event_id for d in log[:4]] == [e.id for e in (*began, *ended)]
    assert {(d.status, d.attempts, d.conversation_id) for d in log} == {(PENDING, 0, "c1")}
    assert all(d.url.startswith("https://hooks.example/") for d in log)
    assert await store.list_deliveries("o2", 100) == []
    # The stored body is the event's own, sent as is.
    claimed = await store.claim_deliveries(later(1), 10, LEASE, "tok")
    assert claimed[0].body == began[0].body() and claimed[0].event_type == "conversation.created"
    assert claimed[0].deadline == T0 + timedelta(seconds=RETRY_WINDOW_S)


async def test_a_refused_change_writes_no_events(store: Store) -> None:
    await make_org(store, "o1")
    await store.create_webhook(endpoint("o1", "we_all"))
    c = conversation("o1", "c1")
    await store.begin_turn(TurnBegin(turn=turn("o1", "c1", "t1"), new_conversation=c))
    with pytest.raises(TurnConflict):  # the conversation is held by t1
        await store.begin_turn(TurnBegin(
            turn=turn("o1", "c1", "t2"),
            outbox=(ev.message_created(IDS, message("o1", "c1", "t2", "user")),)))
    assert await store.list_deliveries("o1", 100) == []


async def test_events_nobody_subscribes_to_are_not_stored(store: Store) -> None:
    await make_org(store, "o1")
    await make_org(store, "o2")
    await store.create_webhook(endpoint("o2", "we_other"))  # another organisation's
    await store.create_webhook(endpoint("o1", "we_turns", (ev.TURN_COMPLETED,)))
    await store.append_outbox(handoffs("o1", "c1"))
    assert await store.list_deliveries("o1", 100) == []
    assert await store.claim_deliveries(later(10), 10, LEASE, "tok") == []


async def test_handoff_events_are_delivered_in_order_per_conversation(store: Store) -> None:
    await make_org(store, "o1")
    await store.create_webhook(endpoint("o1", "we_1"))
    await store.create_webhook(endpoint("o1", "we_2"))
    one, two = handoffs("o1", "c1"), handoffs("o1", "c2")
    await store.append_outbox([one[0], two[0], one[1], two[1]])
    await store.append_outbox([*one[2:], *two[2:]])
    now = later(10)
    # One delivery per (endpoint, conversation) at a time: the head of each queue.
    first = await store.claim_deliveries(now, 10, LEASE, "a")
    assert sorted((d.endpoint_id, d.event_id) for d in first) == sorted(
        (e, h.id) for e in ("we_1", "we_2") for h in (one[0], two[0]))
    assert await store.claim_deliveries(now, 10, LEASE, "b") == []  # all heads are claimed
    sent: dict[tuple[str, str], list[str]] = {}
    batch = first
    while batch:
        for d in batch:
            key = (d.endpoint_id, "c1" if d.event_id in {e.id for e in one} else "c2")
            sent.setdefault(key, []).append(d.event_type)
            assert await store.finish_delivery(AttemptResult(d.id, d.claim_token, DELIVERED,
                                                             now, 204))
        batch = await store.claim_deliveries(now, 10, LEASE, f"t{len(sent)}")
    kinds = [ev.HANDOFF_REQUESTED, ev.HANDOFF_CLAIMED, ev.HANDOFF_RELEASED,
             ev.CONVERSATION_CLOSED]
    assert sent == {(e, c): kinds for e in ("we_1", "we_2") for c in ("c1", "c2")}
    log = await store.list_deliveries("o1", 100)
    assert len(log) == 16 and {d.status for d in log} == {DELIVERED}
    assert all(d.delivered_at == now and d.attempts == 1 and d.last_status == 204
               for d in log)


async def test_a_claim_holds_until_its_outcome_or_its_lease_ends(store: Store) -> None:
    await make_org(store, "o1")
    await store.create_webhook(endpoint("o1", "we_1"))
    await store.append_outbox(handoffs("o1", "c1")[:2])
    assert await store.claim_deliveries(T0 - timedelta(seconds=1), 10, LEASE, "x") == []
    [d] = await store.claim_deliveries(later(1), 10, later(60), "a")
    assert await store.claim_deliveries(later(59), 10, later(120), "b") == []
    # The lease ran out (its dispatcher died): another claims it, and the first one's
    # late outcome is refused.
    [again] = await store.claim_deliveries(later(60), 10, later(120), "b")
    assert again.id == d.id and again.claim_token == "b"
    assert not await store.finish_delivery(AttemptResult(d.id, "a", DELIVERED, later(61)))
    # A failed attempt: due again at its next attempt, and not before.
    retry_at = later(100)
    assert await store.finish_delivery(AttemptResult(
        d.id, "b", PENDING, later(61), 500, "HTTP 500: no", retry_at))
    assert await store.claim_deliveries(later(99), 10, later(200), "c") == []
    [third] = await store.claim_deliveries(retry_at, 10, later(200), "c")
    assert third.id == d.id and third.attempts == 1
    [row] = [r for r in await store.list_deliveries("o1", 10) if r.id == d.id]
    assert (row.status, row.last_status, row.last_error, row.next_attempt_at) == (
        PENDING, 500, "HTTP 500: no", retry_at)
    # Given up: the conversation's next event is due.
    assert await store.finish_delivery(AttemptResult(d.id, "c", FAILED, later(101), 0,
                                                     "refused"))
    [nxt] = await store.claim_deliveries(later(101), 10, later(200), "d")
    assert nxt.event_type == ev.HANDOFF_CLAIMED
    failed = await store.list_deliveries("o1", 10, status=FAILED)
    assert [(f.id, f.attempts, f.next_attempt_at) for f in failed] == [(d.id, 2, None)]


async def test_removing_an_endpoint_cancels_its_pending_deliveries(store: Store) -> None:
    await make_org(store, "o1")
    await store.create_webhook(endpoint("o1", "we_1"))
    await store.create_webhook(endpoint("o1", "we_2"))
    await store.append_outbox(handoffs("o1", "c1")[:1])
    assert await store.remove_webhook("o1", "we_1", later(1))
    claimed = await store.claim_deliveries(later(2), 10, LEASE, "a")
    assert [d.endpoint_id for d in claimed] == ["we_2"]
    assert [d.status for d in await store.list_deliveries("o1", 10, endpoint_id="we_1")] == [
        CANCELLED]
    await store.append_outbox(handoffs("o1", "c1")[1:2])  # we_1 gets nothing new
    assert [d.endpoint_id for d in await store.list_deliveries("o1", 10, status=PENDING)] == [
        "we_2", "we_2"]


async def test_the_log_is_limited_and_filtered(store: Store) -> None:
    await make_org(store, "o1")
    await store.create_webhook(endpoint("o1", "we_1"))
    await store.append_outbox([replace(e, conversation_id=f"c{n}")
                               for n, e in enumerate(handoffs("o1", "c"))])
    assert len(await store.list_deliveries("o1", 3)) == 3
    assert len(await store.list_deliveries("o1", MAX_LISTED_DELIVERIES)) == 4
    assert await store.list_deliveries("o1", 10, endpoint_id="we_other") == []


async def test_two_dispatchers_never_claim_the_same_delivery(database_url: str) -> None:
    stores = [open_store(database_url) for _ in range(2)]
    for s in stores:
        await s.open()
    try:
        await make_org(stores[0], "o1")
        await stores[0].create_webhook(endpoint("o1", "we_1"))
        await stores[0].append_outbox([e for n in range(30) for e in handoffs("o1", f"c{n}")])
        claimed: list[int] = []
        for round_ in range(6):
            batches = await asyncio.gather(*(
                s.claim_deliveries(later(10), 7, LEASE, f"{round_}-{n}")
                for n, s in enumerate(stores)))
            for batch in batches:
                claimed += [d.id for d in batch]
        assert len(claimed) == len(set(claimed)) == 30  # every head once, none twice
    finally:
        for s in stores:
            await s.close()


async def test_finished_deliveries_are_pruned_pending_ones_stay(store: Store) -> None:
    await make_org(store, "o1")
    await store.create_webhook(endpoint("o1", "we_1"))
    await store.create_webhook(endpoint("o1", "we_2"))
    old, new = handoffs("o1", "c1")[0], replace(handoffs("o1", "c2")[0], created_at=later(100))
    await store.append_outbox([old, new])
    for d in await store.claim_deliveries(later(200), 10, later(300), "a"):
        if not (d.event_id == old.id and d.endpoint_id == "we_2"):
            assert await store.finish_delivery(AttemptResult(d.id, "a", DELIVERED, later(200)))
    assert await store.prune_deliveries(later(50)) == 1  # old's delivered one (we_1)
    left = await store.list_deliveries("o1", 10)
    assert sorted((d.event_id == old.id, d.endpoint_id) for d in left) == [
        (False, "we_1"), (False, "we_2"), (True, "we_2")]
    assert await store.prune_deliveries(later(101)) == 2  # new's; old's pending one stays
    [kept] = await store.list_deliveries("o1", 10)
    assert (kept.event_id, kept.status) == (old.id, PENDING)
    # The event row of the kept delivery is still there (its body is what gets sent).
    assert await store.finish_delivery(AttemptResult(kept.id, "a", FAILED, later(300)))
    assert await store.prune_deliveries(later(400)) == 1
    assert await store.list_deliveries("o1", 10) == []
