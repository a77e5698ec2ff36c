"""Store contract: organisations, keys, agents, end users, companies and tickets, and
tenancy scoping on every lookup a client can influence."""

from __future__ import annotations

from dataclasses import replace

import pytest
from store_contract import T0, begin_new, conversation, later, make_org, turn

from core.domain import ApiKey, OrgSettings, TurnRecord
from core.flows.store import ExecutionRecord, ModelPrice, WaitRecord, flow_store
from core.store.base import EndUser, Store, StoredAgent, TurnBegin, TurnCommit
from core.store.rows import dumps


async def test_organisations_by_id_and_slug_and_their_settings(store: Store) -> None:
    org = await make_org(store, "o1", slug="acme")
    assert await store.get_org("o1") == org
    assert await store.get_org_by_slug("acme") == org
    assert await store.get_org("nope") is None and await store.get_org_by_slug("x") is None
    settings = OrgSettings(allowed_origins=("https://a.example",), require_identity=True,
                           extra={"rate_limit": {"rps": 2.5}})
    await store.update_org_settings("o1", settings)
    updated = await store.get_org("o1")
    assert updated is not None and updated.settings == settings


async def test_organisations_are_listed_by_slug(store: Store) -> None:
    assert await store.list_orgs() == []
    zeta = await make_org(store, "o1", slug="zeta")
    acme = await make_org(store, "o2", slug="acme")
    assert await store.list_orgs() == [acme, zeta]


async def test_a_duplicate_slug_is_refused(store: Store) -> None:
    await make_org(store, "o1", slug="acme")
    with pytest.raises(Exception):  # noqa: B017 - backends raise their own integrity error
        await make_org(store, "o2", slug="acme")


async def test_keys_are_found_by_hash_and_listed_per_organisation(store: Store) -> None:
    await make_org(store, "o1")
    await make_org(store, "o2")
    k1 = ApiKey("k1", "o1", "secret", "sk_live_ab", "ci", T0)
    k2 = ApiKey("k2", "o1", "publishable", "pk_live_cd", "", later(1))
    k3 = ApiKey("k3", "o2", "secret", "sk_live_ef", "", T0)
    for key, digest in ((k1, "h1"), (k2, "h2"), (k3, "h3")):
        await store.create_key(key, digest)
    assert await store.find_key("h2") == k2
    assert await store.find_key("nope") is None
    assert [k.id for k in await store.list_keys("o1")] == ["k1", "k2"]
    assert [k.id for k in await store.list_keys("o2")] == ["k3"]


def agent(org_id: str, agent_id: str, slug: str, active: bool = False,
          at_s: float = 0, **definition: object) -> StoredAgent:
    return StoredAgent(
        id=agent_id, org_id=org_id, slug=slug, name=slug.title(),
        definition={"name": slug.title(), "slug": slug, "knowledge_base":
                    {"path": "help/center", "url": ""}, **definition},
        active=active, created_at=later(at_s), updated_at=later(at_s),
    )


async def test_agents_keep_their_document_as_applied(store: Store) -> None:
    await make_org(store, "o1")
    applied = agent("o1", "a1", "support", provider={"kind": "kb"})
    stored = await store.upsert_agent(applied)
    assert stored == applied
    assert await store.get_agent("o1", "a1") == applied
    assert await store.get_agent("o1", "support") == applied


async def test_an_agent_updated_by_slug_keeps_its_id(store: Store) -> None:
    await make_org(store, "o1")
    await store.upsert_agent(agent("o1", "a1", "support"))
    updated = await store.upsert_agent(agent("o1", "a2", "support", at_s=5, description="v2"))
    assert updated.id == "a1" and updated.definition["description"] == "v2"
    assert updated.created_at == later(0) and updated.updated_at == later(5)
    assert [a.id for a in await store.list_agents("o1")] == ["a1"]


async def test_one_active_agent_per_organisation(store: Store) -> None:
    await make_org(store, "o1")
    await make_org(store, "o2")
    await store.upsert_agent(agent("o1", "a1", "first", at_s=0))
    await store.upsert_agent(agent("o1", "a2", "second", at_s=1))
    active = await store.get_active_agent("o1")
    assert active is not None and active.id == "a1"  # none active: the oldest
    await store.upsert_agent(agent("o1", "a2", "second", active=True, at_s=2))
    await store.upsert_agent(agent("o2", "a3", "other", active=True))
    active = await store.get_active_agent("o1")
    assert active is not None and active.id == "a2"
    await store.upsert_agent(agent("o1", "a1", "first", active=True, at_s=3))
    assert [(a.slug, a.active) for a in await store.list_agents("o1")] == [
        ("first", True), ("second", False)]
    other = await store.get_active_agent("o2")
    assert other is not None and other.id == "a3"


async def test_an_agent_id_wins_over_another_agents_slug(store: Store) -> None:
    await make_org(store, "o1")
    await store.upsert_agent(agent("o1", "a1", "support"))
    await store.upsert_agent(agent("o1", "support", "sales"))  # id equals the other's slug
    found = await store.get_agent("o1", "support")
    assert found is not None and found.slug == "sales"


async def test_end_users_companies_and_tickets(store: Store) -> None:
    await make_org(store, "o1")
    user = EndUser("o1", "u1", "co1", {"plan": "pro"}, {"page": "/x"})
    await store.begin_turn(TurnBegin(turn=(await _turn_for(store)), end_user=user))
    assert await store.get_end_user("o1", "u1") == user
    await store.upsert_company("o1", "co1", "Acme", {"seats": 3})
    await store.upsert_company("o1", "co1", "Acme Inc", {"seats": 4})
    assert await store.get_company("o1", "co1") == {"external_id": "co1", "name": "Acme Inc",
                                                   "seats": 4}
    await store.create_ticket("tk1", "o1", "c1", "billing", "refund", T0)
    tickets = await store.list_tickets("o1", "c1")
    assert [(t["id"], t["team"], t["subject"]) for t in tickets] == [("tk1", "billing",
                                                                       "refund")]


async def _turn_for(store: Store) -> TurnRecord:
    """The next turn of conversation c1 (created with one finished, empty turn)."""
    await begin_new(store, "o1", "c1", "t0")
    await store.commit_turn(TurnCommit("t0", "c1", "completed", 0, T0))
    return turn("o1", "c1", "t1")


async def test_every_lookup_is_scoped_by_organisation(store: Store) -> None:
    """What organisation o1 wrote reads as not found (or empty) through o2."""
    await make_org(store, "o1")
    await make_org(store, "o2")
    await store.upsert_agent(agent("o1", "a1", "support"))
    await store.begin_turn(TurnBegin(
        turn=(await _turn_for(store)),
        end_user=EndUser("o1", "u1"),
    ))
    started = await store.get_turn("o1", "t1")
    assert started is not None
    await begin_new(store, "o1", "c9", "t9", key="k")
    await store.upsert_company("o1", "co1", "Acme", {})
    await store.create_ticket("tk1", "o1", "c1", "team", "s", T0)
    flows = flow_store(store)
    execution = ExecutionRecord("e1", "o1", "a1", "c1", "intent", "waiting", "ask", {}, 1,
                                T0, T0)
    await flows.save_execution(execution, WaitRecord("w1", "o1", "e1", "c1", "ask", {},
                                                     "pending", later(60), T0))
    await flows.set_model_price("o1", ModelPrice("m", 1, 2), T0)
    await flows.put_flow_reply("o1", "fk", "h", dumps({"x": 1}), T0)

    assert await store.get_agent("o2", "a1") is None
    assert await store.get_agent("o2", "support") is None
    assert await store.get_active_agent("o2") is None
    assert await store.list_agents("o2") == []
    assert await store.get_conversation("o2", "c1") is None
    assert await store.get_turn("o2", "t1") is None
    assert await store.find_turn_by_key("o2", "k") is None
    assert await store.list_messages("o2", "c1", 10) == ([], 0)
    assert await store.recent_messages("o2", "c1", 10) == []
    assert await store.list_events("o2", "c1", 0) == []
    assert await store.last_turn("o2", "c1") is None
    assert await store.get_interrupt("o2", "i1") is None
    assert await store.resume_turn("o2", "i1", T0) is None
    assert await store.get_end_user("o2", "u1") is None
    assert await store.get_company("o2", "co1") is None
    assert await store.list_tickets("o2", "c1") == []
    assert await store.list_keys("o2") == []
    assert await store.sum_spend("o2", T0) == 0
    assert await store.usage_report("o2", T0) == []
    assert await flows.get_execution("o2", "e1") is None
    assert await flows.get_wait("o2", "w1") is None
    assert await flows.claim_wait("o2", "w1", T0) is False
    assert await flows.get_model_price("o2", "m") is None
    assert await flows.list_model_prices("o2") == []
    assert await flows.delete_model_price("o2", "m") is False
    assert await flows.get_flow_reply("o2", "fk") is None
    with pytest.raises(Exception):  # noqa: B017 - not found for o2, whatever the backend
        await store.begin_turn(TurnBegin(turn=replace(started, id="t2", org_id="o2")))
    # ... and o1 still sees all of it.
    assert await flows.claim_wait("o1", "w1", T0) is True


async def test_key_lifecycle_revoke_and_expire(store: Store) -> None:
    from datetime import timedelta, timezone

    await make_org(store, "o1")
    await store.create_key(ApiKey("k1", "o1", "secret", "sk_live_ab", "", T0), "h1")
    assert await store.get_key("k1") == ApiKey("k1", "o1", "secret", "sk_live_ab", "", T0)
    assert await store.get_key("nope") is None
    await store.expire_key("k1", later(3600))
    await store.expire_key("k1", later(7200))  # never pushed back
    # An earlier instant written with another offset still wins (instants, not text).
    earlier = later(1800).astimezone(timezone(timedelta(hours=5)))
    await store.expire_key("k1", earlier)
    key = await store.get_key("k1")
    assert key is not None and key.expires_at == later(1800)
    assert await store.revoke_key("k1", later(10)) is True
    assert await store.revoke_key("k1", later(11)) is False
    revoked = await store.find_key("h1")
    assert revoked is not None and revoked.revoked


async def test_stored_bytes_count_the_organisations_messages(store: Store) -> None:
    from core.domain import MessageRecord

    await make_org(store, "o1")
    await make_org(store, "o2")
    text = "héllo"  # 6 bytes in UTF-8
    await store.begin_turn(TurnBegin(
        turn=turn("o1", "c1", "t1"), new_conversation=conversation("o1", "c1"),
        user_message=MessageRecord("m1", "c1", "o1", "t1", "user", text, "completed", T0),
    ))
    assert await store.stored_bytes("o1") == 6 + len("[]")
    assert await store.stored_bytes("o2") == 0
