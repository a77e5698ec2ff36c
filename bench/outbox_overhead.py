"""What webhooks out cost a turn's two store writes (begin and commit) on SQLite: turns
written with no events (the baseline), with their four events for an organisation that
has no endpoint, and for one that has one subscribed endpoint.

    .venv/bin/python -m bench.outbox_overhead [--turns 300] [--rounds 5]

The modes run interleaved, `--rounds` times, on one database (synchronous=NORMAL, so
fsync does not drown the difference); the median per mode is printed as microseconds a
turn and as a ratio to the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from core.clock import SequentialIds
from core.domain import ConversationRecord, MessageRecord, Organisation, OrgSettings, TurnRecord
from core.events import Completed
from core.outbox import events as ev
from core.outbox.endpoints import WebhookEndpoint
from core.store.base import TurnBegin, TurnCommit
from core.store.sqlite import SqliteStore

T = datetime(2026, 1, 1, tzinfo=UTC)


async def _turns(store: SqliteStore, org: str, ids: SequentialIds, turns: int,
                 outbox: bool) -> float:
    start = time.perf_counter()
    for _ in range(turns):
        cid, tid = ids.uuid(), ids.uuid()
        c = ConversationRecord(cid, org, "a", "u", "open", 0, T, T)
        user = MessageRecord(ids.uuid(), cid, org, tid, "user", "hello", "completed", T)
        reply = MessageRecord(ids.uuid(), cid, org, tid, "assistant", "hi", "completed", T)
        began = ((ev.conversation_created(ids, c), ev.message_created(ids, user))
                 if outbox else ())
        t = await store.begin_turn(TurnBegin(
            turn=TurnRecord(tid, cid, org, "running", "a", 0, 0, T, T),
            new_conversation=c, user_message=user, outbox=began))
        ended = ((ev.message_created(ids, reply), ev.turn_completed(
            ids, org, cid, tid, "completed", Completed("hi"), T)) if outbox else ())
        await store.commit_turn(TurnCommit(tid, cid, "completed", t.first_seq, T,
                                           messages=(reply,), outbox=ended))
    return (time.perf_counter() - start) / turns * 1e6


async def main(turns: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteStore(Path(folder) / "bench.db", synchronous="NORMAL")
        await store.open()
        ids = SequentialIds()
        for org in ("plain", "hooked"):
            await store.create_org(Organisation(org, org, org, OrgSettings(), T))
        await store.create_webhook(WebhookEndpoint("we_1", "hooked", "https://x.example/",
                                                   "s" * 32, (), T))
        modes = {"no events (baseline)": ("plain", False),
                 "events, no endpoint": ("plain", True),
                 "events, one endpoint": ("hooked", True)}
        results: dict[str, list[float]] = {name: [] for name in modes}
        for _ in range(rounds):
            for name, (org, outbox) in modes.items():
                results[name].append(await _turns(store, org, ids, turns, outbox))
        await store.close()
    base = statistics.median(results["no events (baseline)"])
    for name, values in results.items():
        median = statistics.median(values)
        print(f"{name:22s} {median:8.0f} us/turn  x{median / base:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.turns, args.rounds))
