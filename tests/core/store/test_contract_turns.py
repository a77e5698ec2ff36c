"""Store contract: conversations, turns, claims, sequence numbers, events and resume
cursors, idempotency keys, interrupts, the usage ledger and event retention."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest
from store_contract import T0, Ids, begin_new, conversation, later, make_org, turn

from core.domain import InterruptRecord, MessageRecord, PendingCall
from core.errors import SwitchboardError
from core.events import Completed, Event, EventBody, TextDelta, TurnStarted, event_to_dict
from core.store.base import (
    Store,
    TurnBegin,
    TurnClaimLost,
    TurnCommit,
    TurnConflict,
    UsageEntry,
)


def events_for(conversation_id: str, turn_id: str, first_seq: int, deltas: list[str],
               step_s: float = 0.001) -> tuple[Event, ...]:
    bodies: list[EventBody] = [TurnStarted(conversation_id, "agent-1", "a", turn_id)]
    bodies += [TextDelta(d) for d in deltas]
    bodies.append(Completed(text="".join(deltas), message_id="m"))
    return tuple(Event(first_seq + i, conversation_id, turn_id, later(i * step_s), body)
                 for i, body in enumerate(bodies))


async def commit(store: Store, org_id: str, conversation_id: str, turn_id: str,
                 first_seq: int, deltas: list[str], status: str = "completed",
                 **extra: object) -> tuple[Event, ...]:
    events = events_for(conversation_id, turn_id, first_seq, deltas)
    await store.commit_turn(TurnCommit(
        turn_id=turn_id, conversation_id=conversation_id, status=status,
        last_seq=events[-1].seq, updated_at=later(1), events=events, **extra,  # type: ignore[arg-type]
    ))
    return events


def message(org_id: str, conversation_id: str, turn_id: str, mid: str, role: str,
            content: str) -> MessageRecord:
    return MessageRecord(id=mid, conversation_id=conversation_id, org_id=org_id,
                         turn_id=turn_id, role=role, content=content, status="completed",
                         created_at=T0)


async def test_a_new_conversation_numbers_its_first_turn_from_one(store: Store) -> None:
    await make_org(store, "o1")
    started = await begin_new(store, "o1", "c1", "t1")
    assert (started.first_seq, started.last_seq) == (1, 0)
    stored = await store.get_turn("o1", "t1")
    assert stored is not None and stored.status == "running" and stored.first_seq == 1


async def test_sequence_numbers_continue_from_the_stored_counter(store: Store) -> None:
    await make_org(store, "o1")
    first = await begin_new(store, "o1", "c1", "t1")
    await commit(store, "o1", "c1", "t1", first.first_seq, ["a", "b"])
    second = await store.begin_turn(TurnBegin(turn=turn("o1", "c1", "t2")))
    assert second.first_seq == 5  # 1 started + 2 deltas + 1 completed
    c = await store.get_conversation("o1", "c1")
    assert c is not None and c.last_seq == 4


async def test_one_running_turn_per_conversation(store: Store) -> None:
    await make_org(store, "o1")
    await begin_new(store, "o1", "c1", "t1")
    with pytest.raises(TurnConflict) as err:
        await store.begin_turn(TurnBegin(turn=turn("o1", "c1", "t2")))
    assert err.value.kind == TurnConflict.CONVERSATION
    assert await store.get_turn("o1", "t2") is None  # the refused begin wrote nothing


async def test_concurrent_begins_on_one_conversation_let_exactly_one_run(
        store: Store) -> None:
    await make_org(store, "o1")
    first = await begin_new(store, "o1", "c1", "t0")
    await commit(store, "o1", "c1", "t0", first.first_seq, ["x"])
    results = await asyncio.gather(
        *(store.begin_turn(TurnBegin(turn=turn("o1", "c1", f"t{i}"))) for i in range(1, 9)),
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    assert len(won) == 1 and all(isinstance(r, TurnConflict) for r in results
                                 if isinstance(r, BaseException))


async def test_commit_releases_the_claim_and_a_lost_claim_writes_nothing(
        store: Store) -> None:
    await make_org(store, "o1")
    started = await begin_new(store, "o1", "c1", "t1")
    await store.mark_running_turns("cancelled", later(1))  # another process recovered it
    with pytest.raises(TurnClaimLost):
        await commit(store, "o1", "c1", "t1", started.first_seq, ["late"])
    assert await store.list_events("o1", "c1", 0) == []
    again = await store.begin_turn(TurnBegin(turn=turn("o1", "c1", "t2")))
    assert again.first_seq == 1


async def test_begin_on_an_unknown_conversation_is_not_found(store: Store) -> None:
    await make_org(store, "o1")
    with pytest.raises(SwitchboardError) as err:
        await store.begin_turn(TurnBegin(turn=turn("o1", "nope", "t1")))
    assert err.value.reason == "conversation_not_found"


async def test_events_replay_exactly_from_any_cursor(store: Store) -> None:
    await make_org(store, "o1")
    started = await begin_new(store, "o1", "c1", "t1")
    deltas = [f"w{i} " for i in range(100)] + ["ünï ✓"]
    written = await commit(store, "o1", "c1", "t1", started.first_seq, deltas)
    second = await store.begin_turn(TurnBegin(turn=turn("o1", "c1", "t2")))
    written += await commit(store, "o1", "c1", "t2", second.first_seq, ["again"])
    for cursor in (0, 1, 57, 102, 103, 104, len(written)):
        replay = await store.list_events("o1", "c1", cursor)
        expected = [e for e in written if e.seq > cursor]
        assert [event_to_dict(e) for e in replay] == [event_to_dict(e) for e in expected]
    only_second = await store.list_events("o1", "c1", 0, turn_id="t2")
    assert [e.turn_id for e in only_second] == ["t2"] * 3


async def test_last_turn_is_the_latest_stored_or_running(store: Store) -> None:
    await make_org(store, "o1")
    started = await begin_new(store, "o1", "c1", "t1")
    await commit(store, "o1", "c1", "t1", started.first_seq, ["a"])
    last = await store.last_turn("o1", "c1")
    assert last is not None and last.id == "t1"
    await store.begin_turn(TurnBegin(turn=turn("o1", "c1", "t2")))
    last = await store.last_turn("o1", "c1")
    assert last is not None and last.id == "t2"


async def test_messages_page_by_cursor_and_recent_skips_empty_and_tool(store: Store) -> None:
    await make_org(store, "o1")
    started = await store.begin_turn(TurnBegin(
        turn=turn("o1", "c1", "t1"), new_conversation=conversation("o1", "c1"),
        prior_messages=tuple(message("o1", "c1", "t1", f"p{i}", "user", f"m{i}")
                             for i in range(3)),
        user_message=message("o1", "c1", "t1", "u", "user", "question"),
    ))
    await commit(store, "o1", "c1", "t1", started.first_seq, ["x"], messages=(
        message("o1", "c1", "t1", "tool", "tool", "{}"),
        message("o1", "c1", "t1", "empty", "assistant", ""),
        message("o1", "c1", "t1", "a", "assistant", "answer"),
    ))
    page, cursor = await store.list_messages("o1", "c1", 2)
    assert [m.id for m in page] == ["p0", "p1"] and cursor
    rest, end = await store.list_messages("o1", "c1", 10, after=cursor)
    assert [m.id for m in rest] == ["p2", "u", "tool", "empty", "a"] and end == 0
    recent = await store.recent_messages("o1", "c1", 2)
    assert [m.content for m in recent] == ["question", "answer"]
    c = await store.get_conversation("o1", "c1")
    assert c is not None and c.message_count == 7


async def test_begin_updates_context_and_variables(store: Store) -> None:
    await make_org(store, "o1")
    started = await begin_new(store, "o1", "c1", "t1")
    await commit(store, "o1", "c1", "t1", started.first_seq, [])
    await store.begin_turn(TurnBegin(turn=turn("o1", "c1", "t2"),
                                     conversation_context={"plan": "pro"},
                                     conversation_variables={"n": 2}))
    c = await store.get_conversation("o1", "c1")
    assert c is not None and c.context == {"plan": "pro"} and c.variables == {"n": 2}


async def test_an_idempotency_key_names_one_turn_per_organisation(store: Store) -> None:
    await make_org(store, "o1")
    await make_org(store, "o2")
    await begin_new(store, "o1", "c1", "t1", key="k")
    with pytest.raises(TurnConflict) as err:
        await begin_new(store, "o1", "c2", "t2", key="k")  # still running: conflict
    assert err.value.kind == TurnConflict.IDEMPOTENCY_KEY
    assert await store.get_conversation("o1", "c2") is None  # rolled back whole
    await begin_new(store, "o2", "c3", "t3", key="k")  # another organisation's own key
    found = await store.find_turn_by_key("o1", "k")
    assert found is not None and found.id == "t1"
    other = await store.find_turn_by_key("o2", "k")
    assert other is not None and other.id == "t3"


async def test_a_finished_turns_key_can_be_claimed_again(store: Store) -> None:
    await make_org(store, "o1")
    started = await begin_new(store, "o1", "c1", "t1", key="k")
    await commit(store, "o1", "c1", "t1", started.first_seq, ["a"])
    await begin_new(store, "o1", "c2", "t2", key="k", at=later(60))
    found = await store.find_turn_by_key("o1", "k")
    assert found is not None and found.id == "t2"


async def test_concurrent_claims_of_one_key_let_exactly_one_in(store: Store) -> None:
    await make_org(store, "o1")
    results = await asyncio.gather(
        *(begin_new(store, "o1", f"c{i}", f"t{i}", key="same") for i in range(8)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, TurnConflict) for r in results if isinstance(r, BaseException))


def interrupt(org_id: str, conversation_id: str, turn_id: str, iid: str) -> InterruptRecord:
    return InterruptRecord(
        id=iid, org_id=org_id, conversation_id=conversation_id, turn_id=turn_id,
        status="pending", calls=(PendingCall("call-1", "lookup", '{"q":1}'),),
        state={"step": 1}, expires_at=later(900), created_at=T0,
    )


async def test_an_interrupt_resumes_once_and_numbers_the_new_segment(store: Store) -> None:
    await make_org(store, "o1")
    started = await begin_new(store, "o1", "c1", "t1")
    await commit(store, "o1", "c1", "t1", started.first_seq, ["a"], status="interrupted",
                 interrupt=interrupt("o1", "c1", "t1", "i1"))
    stored = await store.get_interrupt("o1", "i1")
    assert stored is not None and stored.calls[0].tool_name == "lookup"
    assert stored.state == {"step": 1} and stored.status == "pending"
    assert await store.get_interrupt("o2", "i1") is None
    resumed = await store.resume_turn("o1", "i1", later(5))
    assert resumed is not None and resumed.id == "t1" and resumed.first_seq == 4
    assert resumed.status == "running"
    assert await store.resume_turn("o1", "i1", later(6)) is None
    again = await store.get_interrupt("o1", "i1")
    assert again is not None and again.status == "resumed"


async def test_resume_while_another_turn_runs_conflicts_and_keeps_the_interrupt(
        store: Store) -> None:
    await make_org(store, "o1")
    started = await begin_new(store, "o1", "c1", "t1")
    await commit(store, "o1", "c1", "t1", started.first_seq, [], status="interrupted",
                 interrupt=interrupt("o1", "c1", "t1", "i1"))
    await store.begin_turn(TurnBegin(turn=turn("o1", "c1", "t2")))
    with pytest.raises(TurnConflict):
        await store.resume_turn("o1", "i1", later(5))
    pending = await store.get_interrupt("o1", "i1")
    assert pending is not None and pending.status == "pending"
    assert await store.resume_turn("o2", "i1", later(5)) is None  # another tenant


async def test_running_turns_are_listed_for_recovery(store: Store) -> None:
    await make_org(store, "o1")
    await make_org(store, "o2")
    first = await begin_new(store, "o1", "c1", "t1")
    await begin_new(store, "o2", "c2", "t2")
    await commit(store, "o1", "c1", "t1", first.first_seq, ["done"])
    assert [t.id for t in await store.running_turns()] == ["t2"]


async def test_running_turns_left_by_a_crash_are_marked(store: Store) -> None:
    await make_org(store, "o1")
    await begin_new(store, "o1", "c1", "t1")
    assert await store.mark_running_turns("cancelled", later(1)) == 1
    stored = await store.get_turn("o1", "t1")
    assert stored is not None and stored.status == "cancelled"
    await store.begin_turn(TurnBegin(turn=turn("o1", "c1", "t2")))  # claim was released


def usage(org_id: str, turn_id: str, cost: int, at_s: float, user: str = "u1",
          model: str = "m1") -> UsageEntry:
    return UsageEntry(org_id, user, "c1", turn_id, model, 10, 5, cost, later(at_s))


async def test_the_ledger_sums_by_instant_and_reports_by_utc_day(store: Store) -> None:
    await make_org(store, "o1")
    await make_org(store, "o2")
    day = 86_400
    entries = [("o1", 100, 0, "u1"), ("o1", 20, 30, "u2"), ("o1", 3, day, "u1"),
               ("o2", 1000, 0, "u1")]
    for i, (org, cost, at, user) in enumerate(entries):
        cid = f"c{i}"
        started = await begin_new(store, org, cid, f"t{i}")
        await commit(store, org, cid, f"t{i}", started.first_seq, [],
                     usage=replace(usage(org, f"t{i}", cost, at, user), conversation_id=cid))
    assert await store.sum_spend("o1", T0) == 123
    assert await store.sum_spend("o1", later(1)) == 23  # instants, not text
    assert await store.sum_spend("o1", T0, user_id="u1") == 103
    # The same instant written with another UTC offset compares the same.
    from datetime import timezone
    shifted = later(1).astimezone(timezone(timedelta(hours=-5)))
    assert await store.sum_spend("o1", shifted) == 23
    report = await store.usage_report("o1", T0 - timedelta(days=1))
    assert [(r["day"], r["model"], r["turns"], r["cost_micros"]) for r in report] == [
        ("2026-03-01", "m1", 2, 120), ("2026-03-02", "m1", 1, 3)]


async def test_retention_prunes_finished_turns_event_logs_only(store: Store) -> None:
    await make_org(store, "o1")
    started = await begin_new(store, "o1", "c1", "t1")
    await commit(store, "o1", "c1", "t1", started.first_seq, ["old"],
                 messages=(message("o1", "c1", "t1", "a1", "assistant", "old"),))
    second = await store.begin_turn(TurnBegin(turn=turn("o1", "c1", "t2")))
    await commit(store, "o1", "c1", "t2", second.first_seq, [], status="interrupted",
                 interrupt=interrupt("o1", "c1", "t2", "i1"))
    assert await store.prune_events(later(0)) == 0  # nothing stored before the cutoff
    assert await store.prune_events(later(3600)) == 1  # t1 only: t2 can still resume
    remaining = await store.list_events("o1", "c1", 0)
    assert {e.turn_id for e in remaining} == {"t2"}
    page, _ = await store.list_messages("o1", "c1", 10)
    assert [m.content for m in page] == ["old"]  # the transcript stays
    c = await store.get_conversation("o1", "c1")
    assert c is not None and c.last_seq == remaining[-1].seq  # numbering unaffected


async def test_conversations_are_created_empty(store: Store, new_id: Ids) -> None:
    await make_org(store, "o1")
    await store.create_conversation(conversation("o1", "c1", variables={"x": 1}))
    c = await store.get_conversation("o1", "c1")
    assert c is not None and c.last_seq == 0 and c.variables == {"x": 1}
    started = await store.begin_turn(TurnBegin(turn=turn("o1", "c1", new_id("t"))))
    assert started.first_seq == 1


# -- leases (a running turn belongs to the live core renewing it) ------------------------


async def test_a_renewed_lease_is_not_taken_and_an_expired_one_is_taken_once(
        store: Store) -> None:
    await make_org(store, "o1")
    await begin_new(store, "o1", "c1", "t1")
    await begin_new(store, "o1", "c2", "t2")
    assert sorted(await store.renew_leases("core-a", ["t1", "t2", "nope"], later(10))) == [
        "t1", "t2"]
    assert await store.take_expired_leases("core-b", later(9), later(19), T0) == []
    # core-a renews t1 only; t2's lease runs out.
    assert await store.renew_leases("core-a", ["t1"], later(30)) == ["t1"]
    taken = await store.take_expired_leases("core-b", later(11), later(21), T0)
    assert [t.id for t in taken] == ["t2"] and taken[0].status == "running"
    # Taken over: its old holder can no longer renew it, nor can a second sweep take it.
    assert await store.renew_leases("core-a", ["t2"], later(40)) == []
    assert await store.take_expired_leases("core-c", later(12), later(22), T0) == []


async def test_a_turn_never_leased_counts_as_expired_only_once_stale(store: Store) -> None:
    await make_org(store, "o1")
    await begin_new(store, "o1", "c1", "t1")  # updated at T0, never leased
    assert await store.take_expired_leases("core-b", later(5), later(15), T0) == []
    taken = await store.take_expired_leases("core-b", later(5), later(15), later(1))
    assert [t.id for t in taken] == ["t1"]


async def test_finished_turns_hold_no_lease(store: Store) -> None:
    await make_org(store, "o1")
    first = await begin_new(store, "o1", "c1", "t1")
    await store.renew_leases("core-a", ["t1"], later(10))
    await commit(store, "o1", "c1", "t1", first.first_seq, ["done"])
    assert await store.renew_leases("core-a", ["t1"], later(20)) == []
    assert await store.take_expired_leases("core-b", later(60), later(70), later(60)) == []


async def test_concurrent_sweeps_take_each_expired_turn_once(store: Store) -> None:
    await make_org(store, "o1")
    for n in range(6):
        await begin_new(store, "o1", f"c{n}", f"t{n}")
    await store.renew_leases("dead", [f"t{n}" for n in range(6)], later(1))
    results = await asyncio.gather(*(
        store.take_expired_leases(f"core-{k}", later(2), later(12), T0) for k in range(3)))
    taken = [t.id for result in results for t in result]
    assert sorted(taken) == [f"t{n}" for n in range(6)]
