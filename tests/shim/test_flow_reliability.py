"""Exactly-once messages, rate limits and budgets on the public flow dialect."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

from test_flow_dialect import MESSAGES, SESSIONS, new_session

from core import limits
from harness import WIDGET, Harness


async def _send(sb: Harness, token: str, body: dict[str, Any],
                key: str = "") -> tuple[int, bytes, dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    async with sb.http.post(MESSAGES, json=body, headers=headers) as resp:
        return resp.status, await resp.read(), dict(resp.headers)


async def _set_org(sb: Harness, **extra: object) -> None:
    org = await sb.core.store.get_org(sb.org_id)
    assert org is not None
    await sb.core.store.update_org_settings(
        sb.org_id, replace(org.settings, extra={**org.settings.extra, **extra}))


async def _executions(sb: Harness) -> int:
    row = await sb.core.store.db.fetchone(  # type: ignore[attr-defined]
        "SELECT COUNT(*) FROM flow_executions")
    return int(row[0])


async def test_same_key_same_message_runs_once_and_replays_the_reply(sb: Harness) -> None:
    session = await new_session(sb)
    body = {"text": "I'd like to check my order", "intentName": "order_status"}
    results = await asyncio.gather(*(
        _send(sb, session["token"], body, key="flow-key-1") for _ in range(10)))
    assert {status for status, _, _ in results} == {200}
    assert len({raw for _, raw, _ in results}) == 1
    assert await _executions(sb) == 1
    status, raw, _ = await _send(sb, session["token"], body, key="flow-key-1")
    assert status == 200 and raw == results[0][1]


async def test_same_key_different_message_is_rejected(sb: Harness) -> None:
    session = await new_session(sb)
    await _send(sb, session["token"], {"text": "check order", "intentName": "order_status"},
                key="flow-key-2")
    status, raw, _ = await _send(
        sb, session["token"], {"text": "another text", "intentName": "order_status"},
        key="flow-key-2")
    assert status == 422 and b"idempotency_mismatch" in raw


async def test_rate_limited_flow_message_is_429_and_runs_nothing(sb: Harness) -> None:
    session = await new_session(sb)
    await _set_org(sb, rate_limit={"rps": 0.001, "burst": 1})
    body = {"text": "check my order", "intentName": "order_status"}
    first, _, _ = await _send(sb, session["token"], body)
    before = await _executions(sb)
    status, _, headers = await _send(sb, session["token"], body)
    assert first == 200 and status == 429
    assert int(headers["Retry-After"]) >= 1
    assert await _executions(sb) == before


async def test_budget_refusal_is_429(sb: Harness) -> None:
    session = await new_session(sb)
    await _set_org(sb, budget={"daily_micros": 1})

    async def expensive(org_id: str, usage: Any) -> Any:
        return replace(usage, cost_micros=1_000)

    sb.core.engine.price = expensive
    status, raw, headers = await _send(
        sb, session["token"], {"text": "check my order", "intentName": "order_status"})
    assert status == 429 and b"budget_exceeded" in raw and "Retry-After" in headers


async def test_idempotency_key_length_boundary(sb: Harness) -> None:
    """The same limit as every other route (core.limits.MAX_IDEMPOTENCY_KEY_CHARS), reported
    as the flow's validation_failed."""
    session = await new_session(sb)
    body = {"text": "check order", "intentName": "order_status"}
    status, raw, _ = await _send(sb, session["token"], body,
                                 key="k" * limits.MAX_IDEMPOTENCY_KEY_CHARS)
    assert status == 200, raw
    status, raw, _ = await _send(sb, session["token"], body,
                                 key="k" * (limits.MAX_IDEMPOTENCY_KEY_CHARS + 1))
    assert status == 422, raw
    error = json.loads(raw)["error"]
    assert error["code"] == "validation_failed"
    assert [(d["field"], d["code"]) for d in error["details"]] == [
        ("Idempotency-Key", "too_long")]
    assert await _executions(sb) == 1


async def _conversations(sb: Harness) -> int:
    row = await sb.core.store.db.fetchone(  # type: ignore[attr-defined]
        "SELECT COUNT(*) FROM conversations")
    return int(row[0])


async def test_create_session_beyond_the_keys_limit_is_429(sb: Harness) -> None:
    await _set_org(sb, rate_limit={"rps": 0.001, "burst": 2})
    before = await _conversations(sb)
    await new_session(sb)
    await new_session(sb)
    async with sb.http.post(SESSIONS, headers={"Authorization": f"Bearer {WIDGET}"}) as resp:
        status, body, headers = resp.status, await resp.json(), resp.headers
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert int(headers["Retry-After"]) >= 1
    assert await _conversations(sb) == before + 2  # the refused one created nothing


async def test_sessions_of_one_key_share_its_rate_limit(sb: Harness) -> None:
    sessions = [await new_session(sb) for _ in range(2)]
    await _set_org(sb, rate_limit={"rps": 0.001, "burst": 2})
    body = {"text": "check my order", "intentName": "order_status"}
    statuses = [(await _send(sb, sessions[i % 2]["token"], body))[0] for i in range(4)]
    assert statuses == [200, 200, 429, 429]
