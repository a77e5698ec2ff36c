"""Store contract: flow executions and wait tokens, flow replies, the model price table
and server secrets."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from store_contract import T0, later, make_org

from core.flows.store import ExecutionRecord, ModelPrice, WaitRecord, flow_store
from core.store.base import Store


def execution(**changes: object) -> ExecutionRecord:
    base = ExecutionRecord(
        id="e1", org_id="o1", agent_id="a1", conversation_id="c1", intent="refund",
        status="running", current_step="ask", state={"vars": {"n": 1}}, steps_run=1,
        created_at=T0, updated_at=T0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


async def test_an_execution_is_saved_with_its_wait_and_updated_in_place(
        store: Store) -> None:
    await make_org(store, "o1")
    flows = flow_store(store)
    waiting = execution(status="waiting", expected_input={"type": "text"},
                        wait_expires_at=later(600))
    wait = WaitRecord("hash1", "o1", "e1", "c1", "ask", {"type": "text"}, "pending",
                      later(600), T0)
    await flows.save_execution(waiting, wait)
    assert await flows.get_execution("o1", "e1") == waiting
    assert await flows.get_wait("o1", "hash1") == wait
    done = execution(status="completed", steps_run=3, updated_at=later(5))
    await flows.save_execution(done)
    assert await flows.get_execution("o1", "e1") == done


async def test_a_wait_is_claimed_once(store: Store) -> None:
    await make_org(store, "o1")
    flows = flow_store(store)
    await flows.save_execution(execution(), WaitRecord(
        "hash1", "o1", "e1", "c1", "ask", {}, "pending", later(600), T0))
    claims = await asyncio.gather(*(flows.claim_wait("o1", "hash1", later(1))
                                    for _ in range(5)))
    assert sorted(claims) == [False, False, False, False, True]
    used = await flows.get_wait("o1", "hash1")
    assert used is not None and used.status == "used" and used.used_at == later(1)


async def test_flow_replies_by_key(store: Store) -> None:
    await make_org(store, "o1")
    flows = flow_store(store)
    assert await flows.get_flow_reply("o1", "k") is None
    await flows.put_flow_reply("o1", "k", "h1", '{"a":1}', T0)
    assert await flows.get_flow_reply("o1", "k") == ("h1", '{"a":1}', T0)
    await flows.put_flow_reply("o1", "k", "h2", '{"a":2}', later(1))
    assert await flows.get_flow_reply("o1", "k") == ("h2", '{"a":2}', later(1))


async def test_model_prices(store: Store) -> None:
    await make_org(store, "o1")
    flows = flow_store(store)
    await flows.set_model_price("o1", ModelPrice("gpt", 100, 200), T0)
    await flows.set_model_price("o1", ModelPrice("*", 1, 2), T0)
    await flows.set_model_price("o1", ModelPrice("gpt", 150, 250), later(1))
    price = await flows.get_model_price("o1", "gpt")
    assert price is not None
    assert (price.input_micros_per_mtok, price.output_micros_per_mtok) == (150, 250)
    assert [p.model for p in await flows.list_model_prices("o1")] == ["*", "gpt"]
    assert await flows.delete_model_price("o1", "gpt") is True
    assert await flows.delete_model_price("o1", "gpt") is False


async def test_the_first_secret_wins(store: Store) -> None:
    flows = flow_store(store)
    values = await asyncio.gather(*(flows.get_or_create_secret("signing", f"v{i}")
                                    for i in range(4)))
    assert len(set(values)) == 1
    assert await flows.get_or_create_secret("signing", "other") == values[0]
