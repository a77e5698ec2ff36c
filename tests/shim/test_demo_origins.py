"""The demo organisation accepts its widget key from any local port (a newcomer's dev server,
the demo page, a test page) and from nowhere else."""

from __future__ import annotations

import pytest
from halo_client import post, stream

from harness import WIDGET, Harness


@pytest.mark.parametrize("origin", [
    "http://localhost:8080", "http://localhost:5173", "http://127.0.0.1:41234",
])
async def test_local_origins_on_any_port_are_allowed(sb: Harness, origin: str) -> None:
    await sb.scripted_agent(reply="hi")
    status, reply = await post(sb, {"message": "x", "agent_id": "scripted"}, Origin=origin)
    assert status == 200, reply
    status, hdrs, _ = await stream(sb, {"message": "x", "agent_id": "scripted"}, Origin=origin)
    assert status == 200 and hdrs["Access-Control-Allow-Origin"] == origin


@pytest.mark.parametrize("origin", [
    "https://localhost:8080", "http://localhost.evil.example:8080", "https://evil.example",
])
async def test_other_origins_are_refused(sb: Harness, origin: str) -> None:
    await sb.scripted_agent(reply="hi")
    status, reply = await post(sb, {"message": "x", "agent_id": "scripted"}, Origin=origin)
    assert status == 403 and reply["error"]["code"] == "origin_not_allowed"


async def test_a_database_seeded_by_an_older_version_gets_the_patterns(sb: Harness) -> None:
    from dataclasses import replace

    from core.demo.seed import DEMO_ORIGINS, seed_demo

    org = await sb.core.store.get_org(sb.org_id)
    assert org is not None and org.settings.allowed_origins == DEMO_ORIGINS
    old = ("http://localhost:3000", "http://localhost:8080", "http://127.0.0.1:8080")
    await sb.core.store.update_org_settings(org.id, replace(org.settings, allowed_origins=old))
    await seed_demo(sb.core.store, sb.core.auth, sb.core.agents, sb.core.ids, sb.core.clock)
    org = await sb.core.store.get_org(sb.org_id)
    assert org is not None and org.settings.allowed_origins == DEMO_ORIGINS
    # A list the operator changed is left alone.
    mine = ("https://www.example.com",)
    await sb.core.store.update_org_settings(org.id, replace(org.settings, allowed_origins=mine))
    await seed_demo(sb.core.store, sb.core.auth, sb.core.agents, sb.core.ids, sb.core.clock)
    org = await sb.core.store.get_org(sb.org_id)
    assert org is not None and org.settings.allowed_origins == mine


async def test_flow_sessions_use_the_same_patterns(sb: Harness) -> None:
    for origin, expected in (("http://localhost:5173", 200), ("http://127.0.0.1:9", 200),
                             ("http://localhost.evil.example:5173", 403)):
        async with sb.http.post("/api/public/v1/chat/sessions", headers={
                "Authorization": f"Bearer {WIDGET}", "Origin": origin}) as resp:
            assert resp.status == expected, (origin, await resp.text())
