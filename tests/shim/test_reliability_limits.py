"""Rate limits, stream caps and budgets over HTTP: every dialect answers a refusal with
429, `Retry-After` (whole seconds, rounded up) and its own envelope; a refused request
makes no model call and writes nothing."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from core.budgets import period_starts
from core.clock import FixedClock
from core.events import Usage
from core.providers.registry import build_provider
from core.providers.scripted import ScriptedProvider
from harness import SECRET, WIDGET, Harness


@pytest.fixture
async def sbc(tmp_path: Path) -> AsyncIterator[tuple[Harness, FixedClock]]:
    """A Switchboard on a clock that moves only when told (token buckets never refill by
    themselves)."""
    clock = FixedClock()
    harness = await Harness.start(tmp_path, clock=clock)
    try:
        yield harness, clock
    finally:
        await harness.stop()


async def set_org(sb: Harness, **extra: object) -> None:
    org = await sb.core.store.get_org(sb.org_id)
    assert org is not None
    settings = replace(org.settings, extra={**org.settings.extra, **extra})
    await sb.core.store.update_org_settings(sb.org_id, settings)


async def turn_count(sb: Harness) -> int:
    row = await sb.core.store.db.fetchone("SELECT COUNT(*) FROM turns")  # type: ignore[attr-defined]
    return int(row[0])


async def provider(sb: Harness, slug: str) -> ScriptedProvider:
    agent = await sb.core.agents.get(sb.org_id, slug)
    assert agent is not None
    built = build_provider(agent.definition, agent.id)
    assert isinstance(built, ScriptedProvider)
    return built


# (path, body, key, reads the reason out of the dialect's error envelope)
Dialect = tuple[str, dict[str, Any], str, Callable[[dict[str, Any]], str]]
DIALECTS: dict[str, Dialect] = {
    "halo": ("/api/sdk/chat", {"message": "hi", "agent_id": "limited"}, WIDGET,
             lambda body: body["error"]["code"]),
    "halo-stream": ("/api/sdk/chat/stream", {"message": "hi", "agent_id": "limited"}, WIDGET,
                    lambda body: body["error"]["code"]),
    "slug": ("/v1/api/chat/limited", {"message": "hi"}, SECRET,
             lambda body: body["error"]["name"]),
    "slug-stream": ("/v1/api/chat/limited", {"message": "hi", "stream": True}, SECRET,
                    lambda body: body["error"]["name"]),
    "aibot": ("/v1/aibot/bots/limited/send-message",
              {"messages": [{"role": "user", "content": "hi"}]}, SECRET,
              lambda body: body["code"]),
}
# What each envelope says for a rate limit and for a budget refusal.
RATE_LIMITED = {"halo": "rate_limited", "slug": "RateLimitError", "aibot": "rate_limited"}
BUDGET = {"halo": "budget_exceeded", "slug": "RateLimitError", "aibot": "budget_exceeded"}


async def post(sb: Harness, dialect: str) -> tuple[int, dict[str, str], bytes]:
    path, body, key, _ = DIALECTS[dialect]
    async with sb.http.post(path, json=body, headers={"Authorization": f"Bearer {key}"}) as r:
        return r.status, dict(r.headers), await r.read()


@pytest.mark.parametrize("dialect", list(DIALECTS))
async def test_rate_limited_is_429_with_retry_after(
        sbc: tuple[Harness, FixedClock], dialect: str) -> None:
    sb, clock = sbc
    await sb.scripted_agent("limited", reply="ok")
    await set_org(sb, rate_limit={"rps": 1, "burst": 1})
    scripted = await provider(sb, "limited")
    status, _, _ = await post(sb, dialect)
    assert status == 200
    calls, turns = scripted.calls, await turn_count(sb)
    status, headers, raw = await post(sb, dialect)
    assert status == 429, raw
    assert headers["Retry-After"] == "1"
    assert headers["Content-Type"].startswith("application/json")
    body = json.loads(raw)
    assert DIALECTS[dialect][3](body) == RATE_LIMITED[dialect.split("-")[0]]
    assert scripted.calls == calls and await turn_count(sb) == turns
    # A second later the bucket has a token again.
    clock.advance(1.0)
    status, _, _ = await post(sb, dialect)
    assert status == 200


@pytest.mark.parametrize("dialect", ["halo", "slug", "aibot"])
async def test_budget_refusal_makes_no_model_call(sbc: tuple[Harness, FixedClock],
                                                 dialect: str) -> None:
    sb, clock = sbc
    await sb.scripted_agent("limited", reply="word " * 1200)

    async def per_token(org_id: str, usage: Usage) -> Usage:
        return replace(usage, cost_micros=usage.total_tokens)  # 1 micro a token

    sb.core.engine.price = per_token
    await set_org(sb, budget={"daily_micros": 2500})
    scripted = await provider(sb, "limited")
    status, _, _ = await post(sb, dialect)  # estimate ~1001 fits; spends ~1500
    assert status == 200
    calls, turns = scripted.calls, await turn_count(sb)
    status, headers, raw = await post(sb, dialect)
    assert status == 429, raw
    assert DIALECTS[dialect][3](json.loads(raw)) == BUDGET[dialect]
    _, next_day, _, _ = period_starts(clock.now())
    assert headers["Retry-After"] == str(math.ceil((next_day - clock.now()).total_seconds()))
    assert scripted.calls == calls and await turn_count(sb) == turns


async def test_concurrent_stream_cap_is_429(sb: Harness) -> None:
    await sb.scripted_agent("limited", reply="slow " * 200, delay_ms=20)
    await set_org(sb, rate_limit={"rps": 100, "burst": 100, "max_streams": 1})
    path, body, key, _ = DIALECTS["aibot"]
    async with sb.http.post(path, json=body, headers={"Authorization": f"Bearer {key}"}) as held:
        assert held.status == 200
        await held.content.readuntil(b"\n\n")
        status, headers, raw = await post(sb, "aibot")
        assert status == 429 and headers["Retry-After"] == "1"
        assert b'"code": "concurrency_limited"' in raw
        held.close()


async def test_twice_the_rate_over_http(sbc: tuple[Harness, FixedClock]) -> None:
    """A key driven at twice its limit gets accepted requests within 5% of the limit and
    429 with Retry-After for the rest."""
    sb, clock = sbc
    await sb.scripted_agent("limited", reply="ok")
    rps, burst, seconds = 10.0, 5, 10.0
    await set_org(sb, rate_limit={"rps": rps, "burst": burst, "max_streams": 10})
    accepted = refused = 0
    for _ in range(int(seconds * rps * 2)):
        clock.advance(1 / (rps * 2))
        status, headers, _ = await post(sb, "slug")
        if status == 200:
            accepted += 1
        else:
            assert status == 429 and headers["Retry-After"] == "1"
            refused += 1
    expected = burst + rps * seconds
    assert abs(accepted - expected) <= 0.05 * expected
    assert refused == int(seconds * rps * 2) - accepted


async def test_one_key_at_its_limit_does_not_limit_another(sbc: tuple[Harness, FixedClock]
                                                           ) -> None:
    sb, _ = sbc
    await sb.scripted_agent("limited", reply="ok")
    await set_org(sb, rate_limit={"rps": 1, "burst": 1})
    assert (await post(sb, "slug"))[0] == 200
    assert (await post(sb, "slug"))[0] == 429
    assert (await post(sb, "halo"))[0] == 200  # the widget key has its own bucket


async def test_halo_turn_in_progress_is_429_with_retry_after(sb: Harness) -> None:
    """docs/halo.md: every 429 carries Retry-After, also this one, for which the core gives
    no delay (the running turn's length is unknown)."""
    await sb.scripted_agent("slow", reply="slow " * 200, delay_ms=20)
    auth = {"Authorization": f"Bearer {WIDGET}"}
    async with sb.http.post("/api/sdk/chat/stream", json={"message": "hi", "agent_id": "slow"},
                            headers=auth) as held:
        assert held.status == 200
        await held.content.readany()
        async with sb.http.post("/api/sdk/chat", json={
                "message": "again", "agent_id": "slow",
                "session_id": held.headers["X-Session-Id"]}, headers=auth) as resp:
            assert resp.status == 429
            assert (await resp.json())["error"]["code"] == "turn_in_progress"
            assert resp.headers["Retry-After"] == "1"
        held.close()
