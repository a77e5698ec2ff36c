"""The public flow dialect over real HTTP: the spec's example, every variables rule at its
boundary, wait tokens, sessions, pricing, the error table and the curl walkthrough."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from core.clock import FixedClock
from core.errors import Reason
from core.flows import limits
from core.flows.store import ModelPrice
from harness import SECRET, WIDGET, Harness
from shim import flow
from shim.core_client import CoreError

SESSIONS = "/api/public/v1/chat/sessions"
MESSAGES = "/api/public/v1/chat/messages"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


async def new_session(sb: Harness, key: str = WIDGET, body: Any = None) -> dict[str, Any]:
    async with sb.http.post(SESSIONS, json=body, headers={
            "Authorization": f"Bearer {key}"}) as resp:
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
        return data


async def message(sb: Harness, token: str, body: Any) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    async with sb.http.post(MESSAGES, data=data, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"}) as resp:
        return resp.status, await resp.json()


@pytest.fixture
async def clocked(tmp_path: Path) -> AsyncIterator[tuple[Harness, FixedClock]]:
    clock = FixedClock()
    harness = await Harness.start(tmp_path, clock=clock)
    try:
        yield harness, clock
    finally:
        await harness.stop()


async def test_session_returns_token_expiry_conversation_and_intents(sb: Harness) -> None:
    s = await new_session(sb)
    assert s["token"].startswith("sess_") and ISO.match(s["expiresAt"])
    assert UUID.match(s["conversationId"])
    names = {i["name"] for i in s["intents"]}
    assert {"order_status", "book_demo", "product_question"} <= names
    assert all(set(i) == {"name", "description"} for i in s["intents"])


async def test_spec_example_returns_every_reply_field(sb: Harness) -> None:
    s = await new_session(sb)
    status, body = await message(sb, s["token"], {
        "text": "I'd like to check my order", "intentName": "order_status"})
    assert status == 200, body
    reply = body["reply"]
    spec_fields = {"executionId", "conversationId", "blocks", "expectedInput", "waitToken",
                   "waitExpiresAt", "tokenUsage"}
    assert spec_fields <= set(reply)
    assert all(reply[f] is not None for f in spec_fields)
    assert UUID.match(reply["executionId"]) and reply["conversationId"] == s["conversationId"]
    assert reply["blocks"] and all(set(b) == {"type", "id", "payload", "meta"}
                                   for b in reply["blocks"])
    assert reply["blocks"][0]["type"] == "text"
    assert reply["expectedInput"]["kind"] == "text"
    assert reply["waitToken"].startswith("wt_") and ISO.match(reply["waitExpiresAt"])
    assert set(reply["tokenUsage"]) == {"prompt_tokens", "completion_tokens", "total_tokens",
                                        "model", "cost_micros", "cost_usd"}
    assert reply["status"] == "waiting"


async def test_curl_walkthrough_order_status_to_the_end(sb: Harness) -> None:
    """The README / docs/flow.md sequence, request for request."""
    s = await new_session(sb, body={})
    _, first = await message(sb, s["token"], {"text": "Where is my order?",
                                               "intentName": "order_status"})
    _, second = await message(sb, s["token"], {"waitToken": first["reply"]["waitToken"],
                                                "text": "ACM-105287"})
    reply = second["reply"]
    assert reply["status"] == "completed" and reply["waitToken"] is None
    card = reply["blocks"][0]
    assert card["type"] == "order_status"
    assert card["payload"]["status"] == "delivered"
    assert card["payload"]["items"][0]["qty"] == 1  # integers stay integers
    assert reply["blocks"][-1]["payload"]["text"] == "Is there anything else I can help with?"
    async with sb.http.get(f"/api/public/v1/chat/executions/{reply['executionId']}",
                           headers={"Authorization": f"Bearer {s['token']}"}) as resp:
        execution = (await resp.json())["execution"]
    assert execution["status"] == "completed" and execution["intentName"] == "order_status"


def _vars_of_size(total_bytes: int) -> dict[str, str]:
    return {"a": "x" * (total_bytes - len('{"a":""}'))}


@pytest.mark.parametrize(("variables", "ok"), [
    ({f"k{i}": i for i in range(limits.MAX_VARIABLES)}, True),
    ({f"k{i}": i for i in range(limits.MAX_VARIABLES + 1)}, False),
    (_vars_of_size(limits.MAX_VARIABLES_JSON_BYTES), True),
    (_vars_of_size(limits.MAX_VARIABLES_JSON_BYTES + 1), False),
    ({"d": [[[["x"]]]]}, True),
    ({"d": [[[[["x"]]]]]}, False),
    ({"a" * 64: 1, "b_2": None, "c": True, "f": 1.5}, True),
    ({"a" * 65: 1}, False),
])
async def test_variables_boundaries(sb: Harness, variables: dict[str, Any], ok: bool) -> None:
    s = await new_session(sb)
    status, body = await message(sb, s["token"], {
        "text": "x", "intentName": "order_status", "variables": variables})
    if ok:
        assert status == 200, body
    else:
        assert status == 422, body
        assert body["error"]["code"] == "validation_failed"
        assert body["error"]["details"]


@pytest.mark.parametrize(("variables", "fields"), [
    ({"Cart": 1, "9lives": 2, "ok_key": 3, "has-dash": 4, "": 5},
     {"variables.Cart", "variables.9lives", "variables.has-dash", "variables."}),
    ({"profile": {"vip": True}, "list_of_maps": [{"a": 1}], "fine": [1, 2]},
     {"variables.profile", "variables.list_of_maps"}),
])
async def test_each_offending_key_is_reported(sb: Harness, variables: dict[str, Any],
                                              fields: set[str]) -> None:
    s = await new_session(sb)
    status, body = await message(sb, s["token"], {
        "text": "x", "intentName": "order_status", "variables": variables})
    assert status == 422
    assert {d["field"] for d in body["error"]["details"]} == fields


async def test_accepted_variables_are_merged_into_the_conversation(sb: Harness) -> None:
    s = await new_session(sb)
    example = {"cart_total": 129, "page_path": "/pricing", "tags": ["returning", "vip"]}
    status, _ = await message(sb, s["token"], {"text": "x", "intentName": "order_status",
                                               "variables": example})
    assert status == 200
    await message(sb, s["token"], {"text": "y", "intentName": "order_status",
                                   "variables": {"page_path": "/docs"}})
    conversation = await sb.core.store.get_conversation(sb.org_id, s["conversationId"])
    assert conversation is not None
    assert conversation.variables == {**example, "page_path": "/docs"}


@pytest.mark.parametrize(("text", "status"), [
    ("x" * limits.MAX_TEXT_CHARS, 200), ("x" * (limits.MAX_TEXT_CHARS + 1), 422), ("", 422),
])
async def test_text_length_boundary(sb: Harness, text: str, status: int) -> None:
    s = await new_session(sb)
    got, body = await message(sb, s["token"], {"text": text, "intentName": "order_status"})
    assert got == status, body
    if status == 422:
        assert body["error"]["details"][0]["field"] == "text"


@pytest.mark.parametrize(("body", "fields"), [
    ({"text": "x"}, {"intentName"}),
    ({"text": "x", "intentName": ""}, {"intentName"}),
    ({}, {"text", "intentName"}),
])
async def test_intent_name_is_required_for_a_new_execution(
        sb: Harness, body: dict[str, Any], fields: set[str]) -> None:
    s = await new_session(sb)
    status, out = await message(sb, s["token"], body)
    assert status == 422 and out["error"]["code"] == "validation_failed", out
    assert {(d["field"], d["code"]) for d in out["error"]["details"]} == {
        (f, "required") for f in fields}


async def test_unknown_intent_is_422_naming_the_allowed_ones(sb: Harness) -> None:
    s = await new_session(sb)
    status, body = await message(sb, s["token"], {"text": "x", "intentName": "nope"})
    assert status == 422
    assert body["error"]["code"] == "intent_not_found"
    assert sorted(body["error"]["allowedIntents"]) == sorted(i["name"] for i in s["intents"])


async def test_wait_token_errors(sb: Harness) -> None:
    s = await new_session(sb)
    _, first = await message(sb, s["token"], {"text": "x", "intentName": "book_demo"})
    token = first["reply"]["waitToken"]
    status, body = await message(sb, s["token"], {"waitToken": token, "text": "nope"})
    assert status == 422 and body["error"]["code"] == "input_mismatch"
    assert body["error"]["expectedInput"] == {"kind": "email"}
    status, _ = await message(sb, s["token"], {"waitToken": token, "input": "a@b.co"})
    assert status == 200
    status, body = await message(sb, s["token"], {"waitToken": token, "input": "a@b.co"})
    assert status == 409 and body["error"]["code"] == "wait_already_used"
    status, body = await message(sb, s["token"], {"waitToken": "wt_unknown", "text": "a"})
    assert status == 404 and body["error"]["code"] == "wait_not_found"


async def test_expired_wait_is_410(clocked: tuple[Harness, FixedClock]) -> None:
    sb, clock = clocked
    s = await new_session(sb)
    _, first = await message(sb, s["token"], {"text": "x", "intentName": "order_status"})
    clock.advance(limits.WAIT_TTL_S)
    fresh = await new_session(sb, body={"conversationId": s["conversationId"]})
    status, body = await message(sb, fresh["token"], {
        "waitToken": first["reply"]["waitToken"], "text": "ACM-482913"})
    assert status == 410 and body["error"]["code"] == "wait_expired"


async def test_expired_and_tampered_sessions_are_401(clocked: tuple[Harness, FixedClock]) -> None:
    sb, clock = clocked
    s = await new_session(sb)
    good = {"text": "x", "intentName": "order_status"}
    status, body = await message(sb, s["token"][:-1] + ("A" if s["token"][-1] != "A" else "B"),
                                 good)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    clock.advance(limits.SESSION_TTL_S - 1)
    assert (await message(sb, s["token"], good))[0] == 200
    clock.advance(1)
    status, body = await message(sb, s["token"], good)
    assert status == 401 and body["error"]["code"] == "session_expired"


async def test_sessions_need_a_key(sb: Harness) -> None:
    async with sb.http.post(SESSIONS) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "unauthorized"


async def test_secret_key_is_not_a_session(sb: Harness) -> None:
    status, body = await message(sb, SECRET, {"text": "x", "intentName": "order_status"})
    assert status == 403 and body["error"]["code"] == "forbidden"


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", ""])
async def test_malformed_json_is_400(sb: Harness, raw: str) -> None:
    s = await new_session(sb)
    status, body = await message(sb, s["token"], raw)
    assert status == 400 and body["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("body", [
    {"text": 5, "intentName": "order_status"},
    {"text": "x", "intentName": "order_status", "variables": [1]},
    {"text": "x", "intentName": "order_status", "tokenUsage": {"prompt_tokens": "1"}},
    {"text": "x", "intentName": "order_status", "tokenUsage": {"prompt_tokens": -1}},
    {"text": "x", "intentName": "order_status",
     "tokenUsage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 3}},
])
async def test_wrong_types_are_422(sb: Harness, body: dict[str, Any]) -> None:
    s = await new_session(sb)
    status, out = await message(sb, s["token"], body)
    assert status == 422 and out["error"]["code"] == "validation_failed", out


async def test_token_usage_is_priced_and_echoed(sb: Harness) -> None:
    await sb.core.store.set_model_price(  # type: ignore[attr-defined]
        sb.org_id, ModelPrice("gpt-4o", 2_500_000, 10_000_000), sb.core.clock.now())
    s = await new_session(sb)
    status, body = await message(sb, s["token"], {
        "text": "x", "intentName": "order_status",
        "tokenUsage": {"prompt_tokens": 1000, "completion_tokens": 333, "total_tokens": 1333,
                       "model": "gpt-4o"}})
    assert status == 200
    assert body["reply"]["tokenUsage"] == {
        "prompt_tokens": 1000, "completion_tokens": 333, "total_tokens": 1333,
        "model": "gpt-4o", "cost_micros": 5830, "cost_usd": 0.00583,
    }
    # An unpriced model: counted, cost 0.
    status, body = await message(sb, s["token"], {
        "text": "x", "intentName": "order_status",
        "tokenUsage": {"prompt_tokens": 10, "completion_tokens": 5, "model": "mystery"}})
    assert body["reply"]["tokenUsage"]["total_tokens"] == 15
    assert body["reply"]["tokenUsage"]["cost_micros"] == 0


def test_every_reason_and_grpc_code_is_mapped() -> None:
    assert {r.value for r in Reason} <= set(flow.BY_REASON)
    assert {c.name for c in grpc.StatusCode} <= set(flow.BY_CODE)


@pytest.mark.parametrize(("reason", "status"), [
    ("invalid_input", 422), ("validation_failed", 422), ("input_mismatch", 422),
    ("intent_not_found", 422), ("wait_expired", 410), ("wait_already_used", 409),
    ("session_expired", 401), ("unauthenticated", 401),
])
def test_documented_statuses(reason: str, status: int) -> None:
    assert flow.status_and_code(CoreError("INVALID_ARGUMENT", reason, "m"))[0] == status


@pytest.mark.parametrize(("retry_after_s", "header"), [
    (0.2, "1"), (1.0, "1"), (1.2, "2"), (1.5, "2"), (2.0, "2"), (59.01, "60"),
])
def test_retry_after_is_whole_seconds_rounded_up(retry_after_s: float, header: str) -> None:
    """A client that waits as told must not be refused again: never rounded down."""
    error = CoreError("RESOURCE_EXHAUSTED", "rate_limited", "slow down",
                      retry_after_s=retry_after_s)
    assert flow.error_response(error).headers["Retry-After"] == header


def test_unknown_reason_falls_back_on_the_grpc_code() -> None:
    assert flow.status_and_code(CoreError("UNAVAILABLE", "", "core down")) == (503,
                                                                             "unavailable")
    body = flow.error_body(CoreError("UNAVAILABLE", "", "connect failed 10.0.0.1:50051"))
    assert "10.0.0.1" not in body["error"]["message"]


@pytest.mark.parametrize(("body", "ok"), [
    ({"context": {"a": "x" * (limits.MAX_CONTEXT_JSON_BYTES - len('{"a":""}'))}}, True),
    ({"context": {"a": "x" * (limits.MAX_CONTEXT_JSON_BYTES + 1 - len('{"a":""}'))}}, False),
    ({"tokenUsage": {"prompt_tokens": limits.MAX_REPORTED_TOKENS}}, True),
    ({"tokenUsage": {"prompt_tokens": limits.MAX_REPORTED_TOKENS + 1}}, False),
    ({"tokenUsage": {"prompt_tokens": 1, "model": "m" * limits.MAX_MODEL_NAME_CHARS}}, True),
    ({"tokenUsage": {"prompt_tokens": 1, "model": "m" * (limits.MAX_MODEL_NAME_CHARS + 1)}},
     False),
])
async def test_context_and_usage_boundaries(sb: Harness, body: dict[str, Any],
                                            ok: bool) -> None:
    s = await new_session(sb)
    status, out = await message(sb, s["token"], {"text": "x", "intentName": "order_status",
                                                 **body})
    assert status == (200 if ok else 422), out


@pytest.mark.parametrize(("chars", "ok"), [(limits.MAX_INPUT_CHARS, True),
                                           (limits.MAX_INPUT_CHARS + 1, False)])
async def test_answer_length_boundary(sb: Harness, chars: int, ok: bool) -> None:
    await sb.apply_agent("""
        name: Free
        slug: free-text
        provider: {kind: scripted}
        flows:
          note:
            steps:
              - ask: {text: "Your note?", into: note}
              - end: "Thanks"
    """)
    s = await new_session(sb, body={"agentId": "free-text"})
    _, first = await message(sb, s["token"], {"text": "x", "intentName": "note"})
    status, out = await message(sb, s["token"], {"waitToken": first["reply"]["waitToken"],
                                                 "input": "n" * chars})
    assert status == (200 if ok else 422), out


@pytest.mark.parametrize(("steps", "ok"), [(limits.MAX_FLOW_STEPS_DEFINED, True),
                                           (limits.MAX_FLOW_STEPS_DEFINED + 1, False)])
def test_steps_per_flow_definition_boundary(steps: int, ok: bool) -> None:
    from core.agents.definition import AgentDefinitionError, parse_agent

    data = {"name": "Big", "provider": "scripted",
            "flows": {"big": {"steps": [{"say": "x"}] * steps}}}
    if ok:
        parse_agent(data)
    else:
        with pytest.raises(AgentDefinitionError) as err:
            parse_agent(data)
        assert "flows.big.steps" in err.value.errors


async def test_flow_routes_are_documented_and_browser_callable(sb: Harness) -> None:
    from openapi_spec_validator import OpenAPIV31SpecValidator, validate

    async with sb.http.get("/openapi.json") as resp:
        doc = await resp.json()
    validate(doc, cls=OpenAPIV31SpecValidator)
    assert {SESSIONS, MESSAGES} <= set(doc["paths"])
    async with sb.http.options(MESSAGES, headers={
            "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"}) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    s = await new_session(sb)
    async with sb.http.post(MESSAGES, json={"text": "x", "intentName": "order_status"},
                            headers={"Authorization": f"Bearer {s['token']}",
                                     "Origin": "http://localhost:3000"}) as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
