"""`GET /metrics` during a short load: every family is there, with values that follow the
traffic, and no label carries an id, a raw path or other input."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from core.events import Usage
from harness import SECRET, WIDGET, Harness

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
STREAM = "/switchboard.v1.ChatService/StreamChat"
FAMILIES = (
    "switchboard_http_requests", "switchboard_http_request_duration_seconds",
    "switchboard_grpc_calls", "switchboard_grpc_call_duration_seconds",
    "switchboard_open_streams", "switchboard_live_turns", "switchboard_turns",
    "switchboard_turn_duration_seconds", "switchboard_turn_first_token_seconds",
    "switchboard_refusals", "switchboard_store_operation_duration_seconds",
    "switchboard_model_tokens", "switchboard_model_cost_micros",
    "switchboard_webhook_deliveries",
)


async def scrape(sb: Harness) -> tuple[set[str], Samples]:
    async with sb.http.get("/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    families: set[str] = set()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return families, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


@pytest.fixture
async def hook() -> AsyncIterator[str]:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"status": "shipped"})

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


async def set_org(sb: Harness, **extra: object) -> None:
    org = await sb.core.store.get_org(sb.org_id)
    assert org is not None
    await sb.core.store.update_org_settings(
        sb.org_id, replace(org.settings, extra={**org.settings.extra, **extra})
    )


async def post(sb: Harness, path: str, body: dict[str, Any], key: str = SECRET) -> int:
    async with sb.http.post(path, json=body, headers={"Authorization": f"Bearer {key}"}) as r:
        await r.read()
        return r.status


async def test_metrics_follow_a_short_load(sb: Harness, hook: str) -> None:
    await sb.scripted_agent("slowpoke", reply="one two three four five six", delay_ms=40)
    await sb.apply_agent({
        "name": "Hooked", "slug": "hooked",
        "provider": {"kind": "scripted", "reply": "Lookup said: {tool_results}",
                     "tool_calls": [{"name": "lookup_order", "arguments": {"id": "A-1"}}]},
        "tools": [{"name": "lookup_order", "kind": "webhook", "url": hook}],
    })

    async def per_token(org_id: str, usage: Usage) -> Usage:
        return replace(usage, cost_micros=usage.total_tokens)

    sb.core.engine.price = per_token  # type: ignore[method-assign]
    before_families, before = await scrape(sb)
    assert set(FAMILIES) <= before_families

    # A stream in progress: the scrape sees it as an open stream and a live turn.
    async with sb.http.post("/v1/api/chat/slowpoke", json={"message": "hi", "stream": True},
                            headers={"Authorization": f"Bearer {SECRET}"}) as streaming:
        assert streaming.status == 200
        await streaming.content.readline()
        _, during = await scrape(sb)
        assert value(during, "switchboard_open_streams", method=STREAM) >= 1
        assert value(during, "switchboard_live_turns") >= 1
        await streaming.read()

    assert await post(sb, "/api/sdk/chat", {"message": "How do I reset my password?"},
                      WIDGET) == 200
    assert await post(sb, "/v1/api/chat/support-agent",
                      {"message": "What are your business hours?", "stream": False}) == 200
    assert await post(sb, "/v1/aibot/bots/hooked/send-message",
                      {"messages": [{"role": "user", "content": "where is A-1?"}]}) == 200
    async with sb.http.get("/v1/nothing/conv_0123456789") as missing:
        assert missing.status == 404
    async with sb.http.request("PROPFIND", "/healthz") as odd:  # a WebDAV method
        assert odd.status == 405

    await set_org(sb, budget={"daily_micros": 1})
    assert await post(sb, "/v1/api/chat/slowpoke", {"message": "hi"}) == 429
    await set_org(sb, budget={}, rate_limit={"rps": 0.001, "burst": 1})
    statuses = [await post(sb, "/v1/api/chat/slowpoke", {"message": "hi"}) for _ in range(3)]
    assert 429 in statuses

    for _ in range(100):  # a turn leaves the live registry just after its reply is sent
        _, after = await scrape(sb)
        if value(after, "switchboard_live_turns") == 0:
            break
        await asyncio.sleep(0.02)
    families, after = await scrape(sb)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert set(FAMILIES) <= families
    # HTTP: by dialect, route template and status.
    http = "switchboard_http_requests_total"
    assert delta(http, dialect="slug", route="/v1/api/chat/{slug}", status="200") >= 2
    assert delta(http, dialect="halo", route="/api/sdk/chat", status="200") >= 1
    assert delta(http, dialect="aibot", route="/v1/aibot/bots/{AgentId}/send-message",
                 status="200") >= 1
    assert delta(http, dialect="slug", status="429") >= 2
    assert delta(http, route="unmatched", status="404") == 1
    assert delta(http, route="unmatched", method="other", status="405") == 1
    assert delta("switchboard_http_request_duration_seconds_count", dialect="slug") >= 4
    assert delta("switchboard_http_request_duration_seconds_sum", dialect="slug") > 0
    # gRPC: by method and code.
    assert delta("switchboard_grpc_calls_total", method=STREAM, code="OK") >= 1
    assert delta("switchboard_grpc_calls_total", code="RESOURCE_EXHAUSTED") >= 2
    assert delta("switchboard_grpc_call_duration_seconds_sum", method=STREAM) > 0
    # Turns: duration and first token by agent and provider; nothing left running.
    turns = delta("switchboard_turn_duration_seconds_count", agent="slowpoke",
                  provider="scripted")
    assert turns >= 2
    assert delta("switchboard_turns_total", agent="slowpoke", status="completed") == turns
    assert delta("switchboard_turn_duration_seconds_sum", agent="slowpoke") >= 0.2  # 6x40ms
    first = delta("switchboard_turn_first_token_seconds_sum", agent="slowpoke")
    assert 0 < first < delta("switchboard_turn_duration_seconds_sum", agent="slowpoke")
    assert delta("switchboard_turn_duration_seconds_count", agent="support-agent",
                 provider="kb") >= 2
    assert value(after, "switchboard_live_turns") == 0
    assert value(after, "switchboard_open_streams", method=STREAM) == 0
    # Refusals by reason; store latency; tokens and cost by model; webhook outcomes.
    assert delta("switchboard_refusals_total", reason="budget_exceeded") >= 1
    assert delta("switchboard_refusals_total", reason="rate_limited") >= 1
    assert delta("switchboard_store_operation_duration_seconds_count",
                 operation="commit_turn", outcome="ok") >= turns
    assert delta("switchboard_store_operation_duration_seconds_sum",
                 operation="commit_turn") > 0
    assert delta("switchboard_model_tokens_total", model="scripted", kind="completion") > 0
    assert delta("switchboard_model_tokens_total", model="kb", kind="prompt") > 0
    assert delta("switchboard_model_cost_micros_total", model="scripted") > 0
    assert delta("switchboard_webhook_deliveries_total", outcome="ok") == 1

    # Bounded labels: no ids and no raw paths anywhere.
    routes = {r.resource.canonical for r in sb.running.runner.app.router.routes()  # type: ignore[union-attr]
              if r.resource is not None} | {"unmatched"}
    for (name, labels), _ in after.items():
        for label, text in labels:
            assert "conv_" not in text and "0123456789" not in text, (name, label, text)
            assert text != "PROPFIND", (name, label)
            if label == "route":
                assert text in routes, text
    assert json.dumps(sorted(families))  # the scrape parsed as a whole


def test_dashboard_and_operations_doc_cover_every_family() -> None:
    """deploy/grafana-dashboard.json queries only metrics that exist and shows every
    family; docs/operations.md lists every family."""
    root = Path(__file__).resolve().parents[2]
    dashboard = json.loads((root / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bswitchboard_[a-z_]+", e)}
    suffixes = ("_total", "_bucket", "_count", "_sum")
    bases = {next((u[: -len(s)] for s in suffixes if u.endswith(s)), u) for u in used}
    assert bases <= set(FAMILIES), bases - set(FAMILIES)
    assert set(FAMILIES) <= bases, set(FAMILIES) - bases
    doc = (root / "docs" / "operations.md").read_text()
    undocumented = [f for f in FAMILIES if f not in doc]
    assert not undocumented, undocumented
