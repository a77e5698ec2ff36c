"""Store contract: human handoff states (one conditional transition per call, one winner
of concurrent claims), operator messages and the activity log with its cursors."""

from __future__ import annotations

import asyncio

import pytest
from store_contract import T0, Ids, begin_new, later, make_org

from core.domain import MessageRecord
from core.errors import Code, Reason, SwitchboardError
from core.handoffs import ActivityDraft, ActivityKind, HandoffRequest, HandoffState, Operator
from core.store.base import Store, TurnCommit

ANN = Operator("op-ann", "Ann")
BOB = Operator("op-bob", "Bob")
ADMIN = Operator("secret:root", "Root", admin=True)


async def _conversation(store: Store, new_id: Ids, org_id: str = "") -> tuple[str, str]:
    org = org_id or new_id("org")
    if not org_id:
        await make_org(store, org)
    cid, tid = new_id("c"), new_id("t")
    begun = await begin_new(store, org, cid, tid)
    await store.commit_turn(TurnCommit(turn_id=tid, conversation_id=cid, status="completed",
                                       last_seq=begun.last_seq, updated_at=later(1)))
    return org, cid


def _request(org: str, cid: str, ticket: str = "tkt_1") -> HandoffRequest:
    return HandoffRequest(org, cid, "billing", ticket, "Help", "livehelp", later(2))


def _op_message(org: str, cid: str, mid: str, text: str = "Hello, Ann here") -> MessageRecord:
    return MessageRecord(id=mid, conversation_id=cid, org_id=org, turn_id="", role="operator",
                         content=text, status="completed", created_at=later(3),
                         metadata={"operator_name": "Ann"})


async def test_a_conversation_starts_with_the_bot_and_goes_round_the_states(
        store: Store, new_id: Ids) -> None:
    org, cid = await _conversation(store, new_id)
    assert await store.get_handoff(org, cid) is None
    record, activity = await store.request_handoff(_request(org, cid))
    assert (record.state, record.team, record.ticket_id) == ("waiting", "billing", "tkt_1")
    assert activity.kind == ActivityKind.STATE
    assert activity.data["state"] == "waiting" and activity.data["previous"] == "bot"
    assert [t["id"] for t in await store.list_tickets(org, cid)] == ["tkt_1"]
    assert [h.conversation_id for h in await store.list_handoffs(org, ["waiting"])] == [cid]

    claimed, _ = await store.claim_handoff(org, cid, ANN, later(3))
    assert (claimed.state, claimed.operator_id, claimed.operator_name) == (
        "human", "op-ann", "Ann")
    assert await store.list_handoffs(org, ["waiting"]) == []
    said = await store.add_operator_message(_op_message(org, cid, new_id("m")), ANN, later(4))
    assert said.data["role"] == "operator" and said.data["operator"]["name"] == "Ann"
    messages, _ = await store.list_messages(org, cid, 10)
    assert messages[-1].role == "operator" and messages[-1].content == "Hello, Ann here"
    recent = await store.recent_messages(org, cid, 10)
    assert recent[-1].role == "operator"  # the model's view includes what the person said

    released, _ = await store.release_handoff(org, cid, ANN, later(5))
    assert released.state == HandoffState.BOT
    again, _ = await store.request_handoff(_request(org, cid, "tkt_2"))
    closed, last = await store.close_handoff(org, cid, ADMIN, later(6))
    assert (again.state, closed.state) == ("waiting", "closed")
    kinds = [(a.kind, a.data.get("state")) for a in await store.list_activity(org, 0)]
    assert kinds == [("state", "waiting"), ("state", "human"), ("message", None),
                     ("state", "bot"), ("state", "waiting"), ("state", "closed")]
    ids = [a.id for a in await store.list_activity(org, 0)]
    assert ids == sorted(ids) and len(set(ids)) == 6 and ids[-1] == last.id
    assert await store.last_activity_id(org) == last.id


async def test_concurrent_claims_have_exactly_one_winner(store: Store, new_id: Ids) -> None:
    org, cid = await _conversation(store, new_id)
    await store.request_handoff(_request(org, cid))
    operators = [Operator(f"op-{i}", f"Op {i}") for i in range(12)]
    results = await asyncio.gather(
        *(store.claim_handoff(org, cid, op, later(3)) for op in operators),
        return_exceptions=True)
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1 and len(lost) == 11
    assert all(isinstance(e, SwitchboardError) and e.code == Code.ABORTED
               and e.reason == Reason.HANDOFF_CLAIMED for e in lost)
    record = await store.get_handoff(org, cid)
    assert record is not None and record.operator_id == won[0][0].operator_id
    assert [a.data["state"] for a in await store.list_activity(org, 0)] == ["waiting", "human"]


async def test_refused_transitions_change_nothing(store: Store, new_id: Ids) -> None:
    org, cid = await _conversation(store, new_id)
    with pytest.raises(SwitchboardError) as bot_claim:
        await store.claim_handoff(org, cid, ANN, later(3))
    assert (bot_claim.value.code, bot_claim.value.reason) == (
        Code.FAILED_PRECONDITION, Reason.HANDOFF_STATE)
    with pytest.raises(SwitchboardError):
        await store.add_operator_message(_op_message(org, cid, new_id("m")), ANN, later(3))
    await store.request_handoff(_request(org, cid))
    with pytest.raises(SwitchboardError) as twice:
        await store.request_handoff(_request(org, cid, "tkt_2"))
    assert twice.value.reason == Reason.HANDOFF_STATE
    await store.claim_handoff(org, cid, ANN, later(3))
    for act in (store.release_handoff, store.close_handoff):
        with pytest.raises(SwitchboardError) as other:
            await act(org, cid, BOB, later(4))
        assert other.value.reason == Reason.HANDOFF_CLAIMED
    with pytest.raises(SwitchboardError) as bob_says:
        await store.add_operator_message(_op_message(org, cid, new_id("m")), BOB, later(4))
    assert bob_says.value.reason == Reason.HANDOFF_CLAIMED
    messages, _ = await store.list_messages(org, cid, 10)
    assert all(m.role != "operator" for m in messages)
    assert len(await store.list_activity(org, 0)) == 2
    assert [t["id"] for t in await store.list_tickets(org, cid)] == ["tkt_1"]


async def test_another_organisation_sees_nothing(store: Store, new_id: Ids) -> None:
    org, cid = await _conversation(store, new_id)
    other = new_id("org")
    await make_org(store, other)
    with pytest.raises(SwitchboardError) as exc:
        await store.request_handoff(_request(other, cid))
    assert exc.value.code == Code.NOT_FOUND
    await store.request_handoff(_request(org, cid))
    with pytest.raises(SwitchboardError) as claim:
        await store.claim_handoff(other, cid, ANN, later(3))
    assert claim.value.code == Code.NOT_FOUND
    assert await store.get_handoff(other, cid) is None
    assert await store.list_handoffs(other, HandoffState.ALL) == []
    assert await store.list_activity(other, 0) == []


async def test_turns_write_activity_rows_with_their_begin_and_commit(
        store: Store, new_id: Ids) -> None:
    org, cid = await _conversation(store, new_id)
    _, first = await store.request_handoff(_request(org, cid))
    tid = new_id("t")
    from store_contract import turn

    from core.store.base import TurnBegin
    begun = await store.begin_turn(TurnBegin(
        turn=turn(org, cid, tid, at=later(5)),
        activity=(ActivityDraft(ActivityKind.MESSAGE, {"role": "user", "text": "hi"}),)))
    await store.commit_turn(TurnCommit(
        turn_id=tid, conversation_id=cid, status="completed", last_seq=begun.last_seq,
        updated_at=later(6),
        activity=(ActivityDraft(ActivityKind.MESSAGE, {"role": "assistant", "text": "yo"}),)))
    after = await store.list_activity(org, first.id)
    assert [(a.conversation_id, a.data["role"]) for a in after] == [
        (cid, "user"), (cid, "assistant")]
    assert after[0].created_at == later(5)
    # Cursors: from an id, only what came after; per conversation, only its rows.
    assert await store.list_activity(org, after[0].id) == after[1:]
    _, other = await _conversation(store, new_id, org)
    assert await store.list_activity(org, 0, conversation_id=other) == []
    assert after[1].created_at > T0


async def test_the_queue_is_oldest_first_and_bounded(store: Store, new_id: Ids) -> None:
    org, first = await _conversation(store, new_id)
    _, second = await _conversation(store, new_id, org)
    _, third = await _conversation(store, new_id, org)
    for i, cid in enumerate((second, first, third)):
        await store.request_handoff(HandoffRequest(org, cid, "t", f"tkt_{i}", "s", "r",
                                                   later(10 + i)))
    queue = await store.list_handoffs(org, ["waiting"], limit=2)
    assert [h.conversation_id for h in queue] == [second, first]
    page = await store.list_activity(org, 0, limit=2)
    assert len(page) == 2 and (await store.list_activity(org, page[-1].id))[0].id > page[-1].id
