"""The SQLite store's write path (issue #15): a turn's begin and commit run as one
function on the writer thread, and concurrent writes share one transaction (group
commit). Each write must stay atomic on its own: a failing one writes nothing and does
not take the others down; a write is durable (committed) before its caller hears back.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from store_contract import begin_new, later, make_org

from core.domain import MessageRecord
from core.events import Completed, Event, EventBody, TextDelta, TurnStarted
from core.store.base import TurnClaimLost, TurnCommit
from core.store.sqlite import SqliteStore


def _commit(conversation_id: str, turn_id: str, first_seq: int, text: str,
            message_id: str) -> TurnCommit:
    bodies: list[EventBody] = [TurnStarted(conversation_id, "agent-1", "a", turn_id),
                               TextDelta(text), Completed(text=text, message_id=message_id)]
    events = tuple(Event(first_seq + i, conversation_id, turn_id, later(i), b)
                   for i, b in enumerate(bodies))
    reply = MessageRecord(id=message_id, conversation_id=conversation_id, org_id="o1",
                          turn_id=turn_id, role="assistant", content=text,
                          status="completed", created_at=later(1))
    return TurnCommit(turn_id=turn_id, conversation_id=conversation_id, status="completed",
                      last_seq=events[-1].seq, updated_at=later(2), events=events,
                      messages=(reply,))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """SQLite only (this is the SQLite backend's write path, not the contract)."""
    s = SqliteStore(tmp_path / "group.db")
    await s.open()
    yield s
    await s.close()


async def test_concurrent_commits_share_one_transaction_and_a_failing_one_writes_nothing(
        store: SqliteStore, tmp_path: Path) -> None:
    await make_org(store, "o1")
    started = [await begin_new(store, "o1", f"c{i}", f"t{i}") for i in range(6)]
    commits = [_commit(f"c{i}", f"t{i}", s.first_seq, f"reply {i}", f"m{i}")
               for i, s in enumerate(started)]
    # Commit 2 is from a turn that does not hold its conversation (a lost claim); turn 4
    # reuses turn 0's message id (a constraint error after its event row was written).
    commits[2] = _commit("c2", "t-stale", started[2].first_seq, "reply 2", "m2")
    commits[4] = _commit("c4", "t4", started[4].first_seq, "reply 4", "m0")
    before = store.db.group_commits
    results = await asyncio.gather(*(store.commit_turn(c) for c in commits),
                                   return_exceptions=True)
    assert store.db.group_commits - before == 1  # six commits, one transaction
    assert isinstance(results[2], TurnClaimLost)
    assert isinstance(results[4], sqlite3.IntegrityError)
    assert [r for i, r in enumerate(results) if i not in (2, 4)] == [None] * 4
    for i in (0, 1, 3, 5):
        events = await store.list_events("o1", f"c{i}", 0)
        assert [e.seq for e in events] == [1, 2, 3]
        turn = await store.get_turn("o1", f"t{i}")
        assert turn is not None and turn.status == "completed"
    # The failed ones wrote nothing: no events, turns 2 and 4 still running.
    for i in (2, 4):
        assert await store.list_events("o1", f"c{i}", 0) == []
        turn = await store.get_turn("o1", f"t{i}")
        assert turn is not None and turn.status == "running"
    # And what was committed is on disk for any other connection (durable, not pending).
    with sqlite3.connect(tmp_path / "group.db") as other:
        (done,) = other.execute("SELECT COUNT(*) FROM turns WHERE status = 'completed'"
                                ).fetchone()
    assert done == 4


async def test_a_write_survives_its_caller_being_cancelled(store: SqliteStore) -> None:
    await make_org(store, "o1")
    started = await begin_new(store, "o1", "c1", "t1")
    task = asyncio.create_task(
        store.commit_turn(_commit("c1", "t1", started.first_seq, "hi", "m1")))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.close()  # waits for the queued group to finish
    await store.open()
    turn = await store.get_turn("o1", "t1")
    assert turn is not None and turn.status == "completed"
    assert len(await store.list_events("o1", "c1", 0)) == 3
