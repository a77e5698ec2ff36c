"""Input that is valid HTTP and (mostly) valid JSON but cannot be carried to the core as
protobuf: lone surrogates, NaN and overflowing numbers, deep nesting, header bytes gRPC
refuses, requests too large once encoded. Every dialect answers each with a 4xx in its own
JSON envelope, never aiohttp's plain-text 500 (or 413), and never gRPC's own text."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from core import limits
from harness import SECRET, WIDGET, Harness
from shim import core_client

FLOW_SESSIONS = "/api/public/v1/chat/sessions"
FLOW_MESSAGES = "/api/public/v1/chat/messages"


@dataclass(frozen=True)
class Route:
    path: str
    key: str  # "session": a fresh flow session token
    base: dict[str, Any]  # a valid body
    code: Callable[[dict[str, Any]], str]  # the error code or name in the envelope
    message: Callable[[dict[str, Any]], str]
    bad_request: str  # what `code` says for a 400
    unauthorized: str  # ... and for a 401


def _error_code(body: dict[str, Any]) -> str:
    return str(body["error"]["code"])


def _error_message(body: dict[str, Any]) -> str:
    return str(body["error"]["message"])


HALO = Route("/api/sdk/chat", WIDGET, {"message": "hi"}, _error_code, _error_message,
             "invalid_request", "unauthorized")
ROUTES: dict[str, Route] = {
    "halo": HALO,
    "halo-stream": Route("/api/sdk/chat/stream", WIDGET, {"message": "hi"}, _error_code,
                         _error_message, "invalid_request", "unauthorized"),
    "slug": Route("/v1/api/chat/support-agent", SECRET, {"message": "hi"},
                  lambda b: str(b["error"]["name"]), _error_message,
                  "ValidationError", "UnauthorizedError"),
    "aibot": Route("/v1/aibot/bots/support-agent/send-message", SECRET,
                   {"messages": [{"role": "user", "content": "hi"}]},
                   lambda b: str(b["code"]), lambda b: str(b["message"]),
                   "invalid_argument", "unauthenticated"),
    "flow-sessions": Route(FLOW_SESSIONS, WIDGET, {}, _error_code, _error_message,
                           "invalid_request", "unauthorized"),
    "flow-messages": Route(FLOW_MESSAGES, "session",
                           {"text": "hi", "intentName": "order_status"}, _error_code,
                           _error_message, "invalid_request", "unauthorized"),
}


async def key_for(sb: Harness, route: Route) -> str:
    if route.key != "session":
        return route.key
    async with sb.http.post(FLOW_SESSIONS, headers={"Authorization": f"Bearer {WIDGET}"}) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["token"])


async def post_raw(sb: Harness, path: str, body: bytes,
                   headers: dict[str, bytes | str]) -> tuple[int, dict[str, str], bytes]:
    """POST with header values sent as given (aiohttp's client only sends UTF-8 text)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", sb.running.http_port)
    lines = [f"POST {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close",
             b"Content-Type: application/json", f"Content-Length: {len(body)}".encode()]
    for name, value in headers.items():
        lines.append(name.encode() + b": " + (value.encode() if isinstance(value, str)
                                               else value))
    writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    response_headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        response_headers[name.strip().lower()] = value.strip()
    assert "chunked" not in response_headers.get("transfer-encoding", "")
    return int(status_line.split()[1]), response_headers, payload


def json_envelope(headers: dict[str, str], payload: bytes) -> dict[str, Any]:
    assert headers["content-type"].startswith("application/json"), payload[:200]
    body: dict[str, Any] = json.loads(payload)
    return body


def with_extra(route: Route, raw_value: bytes) -> bytes:
    """The route's valid body plus `"x": <raw_value>` (an unknown field every dialect
    ignores: the body is refused as a whole, wherever the value is)."""
    base = json.dumps(route.base).encode()
    return base[:-1] + (b', ' if route.base else b'') + b'"x": ' + raw_value + b'}'


NOT_JSON = "not valid JSON"
UNICODE = "invalid Unicode"
DEEP = "nested too deeply"

# (raw JSON value placed in the body, what the message says)
BAD_VALUES: list[tuple[bytes, str]] = [
    (b'"\\ud800"', UNICODE),  # a lone high surrogate, escaped
    (b'"a\\udc00b"', UNICODE),  # a lone low surrogate
    (b'"\\ude00\\ud83d"', UNICODE),  # a pair in the wrong order
    (b'{"\\udfff": 1}', UNICODE),  # in a key
    (b'[[{"k": ["\\ud800"]}]]', UNICODE),  # nested
    (b'"\xed\xa0\x80"', UNICODE),  # a surrogate's UTF-8 bytes (json.loads lets them pass)
    (b'NaN', NOT_JSON),
    (b'Infinity', NOT_JSON),
    (b'-Infinity', NOT_JSON),
    (b'[1, {"a": NaN}]', NOT_JSON),
    (b'1e400', NOT_JSON),  # overflows a double to inf
    (b'-1e400', NOT_JSON),
    (b'1' + b'0' * 400, NOT_JSON),  # an integer beyond any double
    (b'[' * limits.MAX_JSON_DEPTH + b']' * limits.MAX_JSON_DEPTH, DEEP),  # one level over
]


@pytest.mark.parametrize("name", list(ROUTES))
async def test_json_the_core_cannot_carry_is_400_in_the_envelope(sb: Harness,
                                                                 name: str) -> None:
    route = ROUTES[name]
    key = await key_for(sb, route)
    cases = [(with_extra(route, value), said) for value, said in BAD_VALUES]
    cases.append((b"[" * 100_000 + b"]" * 100_000, DEEP))  # json.loads: RecursionError
    for raw, said in cases:
        status, headers, payload = await post_raw(sb, route.path, raw,
                                                  {"Authorization": f"Bearer {key}"})
        assert status == 400, (raw[:60], payload[:300])
        body = json_envelope(headers, payload)
        assert route.code(body) == route.bad_request, (raw[:60], body)
        assert said in route.message(body), (raw[:60], body)


async def test_nesting_up_to_the_limit_reaches_the_core(sb: Harness) -> None:
    """The cap leaves room for the deepest protobuf path (a Halo context value): a body
    nested exactly MAX_JSON_DEPTH levels deep is a normal turn."""
    deep: Any = []  # MAX_JSON_DEPTH - 4 levels, under 4: the body, then 3 objects
    for _ in range(limits.MAX_JSON_DEPTH - 5):
        deep = [deep]
    for field in ({"context": {"k": {"label": "K", "value": {"v": deep}}}},
                  {"custom_fields": {"a": {"b": {"c": deep}}}}):
        status, _, payload = await post_raw(
            sb, HALO.path, json.dumps({"message": "hi", **field}).encode(),
            {"Authorization": f"Bearer {WIDGET}"})
        assert status == 200, payload[:300]


# Where the reviewer found each one crashing (not only in an ignored field).
IN_PLACE: dict[str, list[bytes]] = {
    "halo": [
        b'{"message": "\\ud800"}',
        b'{"message": "hi", "context": {"\\ud800": {"value": 1}}}',
        b'{"message": "hi", "context": {"a": {"value": "\\ud800"}}}',
        b'{"message": "hi", "context": {"a": {"value": 1e400}}}',
        b'{"message": "hi", "custom_fields": {"\\ud800": 1}}',
        b'{"message": "hi", "custom_fields": {"a": -Infinity}}',
        b'{"message": "hi", "conversation_history": [{"role": "user", "text": "\\ud800"}]}',
        b'{"message": "hi", "images": ["\\ud800"]}',
    ],
    "slug": [b'{"message": "\\ud800"}', b'{"message": "hi", "stream": true, "x": NaN}'],
    "aibot": [
        b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
        b'{"messages": [{"role": "user", "content": "hi"}], "tools": [{"name": "\\ud800"}]}',
        b'{"messages": [{"role": "user", "content": "hi"}],'
        b' "tools": [{"name": "t", "parameters": {"\\ud800": 1}}]}',
        b'{"messages": [{"role": "user", "content": "hi"}],'
        b' "tools": [{"name": "t", "parameters": {"a": 1e400}}]}',
        b'{"messages": [{"role": "user", "content": "hi"}],'
        b' "tools": [{"name": "t", "parameters": {"a": Infinity}}]}',
        b'{"resume": {"interruptId": "x", "payload": {"\\ud800": 1}}}',
        b'{"resume": {"interruptId": "x", "payload": {"c": "\\ud800"}}}',
        b'{"resume": {"interruptId": "\\ud800"}}',
    ],
    "flow-messages": [
        b'{"text": "\\ud800", "intentName": "order_status"}',
        b'{"text": "x", "intentName": "\\ud800"}',
        b'{"text": "x", "intentName": "order_status", "variables": {"\\ud800": 1}}',
        b'{"text": "x", "intentName": "order_status", "context": {"a": 1e400}}',
        b'{"waitToken": "x", "input": "\\ud800"}',
        b'{"waitToken": "x", "input": 1e400}',
    ],
}


@pytest.mark.parametrize("name", list(IN_PLACE))
async def test_bad_values_where_they_are_used(sb: Harness, name: str) -> None:
    route = ROUTES[name]
    key = await key_for(sb, route)
    for raw in IN_PLACE[name]:
        status, headers, payload = await post_raw(sb, route.path, raw, {
            "Authorization": f"Bearer {key}", "Accept": "application/json"})
        assert status == 400, (raw, payload[:300])
        body = json_envelope(headers, payload)
        assert route.code(body) == route.bad_request, (raw, body)
        assert "serialize" not in route.message(body)  # no protobuf internals


# -- headers --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ROUTES))
async def test_authorization_gRPC_cannot_carry_is_401(sb: Harness, name: str) -> None:
    """gRPC metadata is printable ASCII: such a header is no key (401), not a 500."""
    route = ROUTES[name]
    for value in ("Bearer ключ".encode(), b"Bearer \xff\xfe", b"Bearer sk_\xc3\xa9"):
        status, headers, payload = await post_raw(sb, route.path, json.dumps(route.base).encode(),
                                                  {"Authorization": value})
        assert status == 401, (value, payload[:300])
        assert route.code(json_envelope(headers, payload)) == route.unauthorized


@pytest.mark.parametrize("name", ["halo", "halo-stream", "slug", "aibot", "flow-messages"])
async def test_idempotency_key_that_is_not_utf8_is_400(sb: Harness, name: str) -> None:
    route = ROUTES[name]
    key = await key_for(sb, route)
    status, headers, payload = await post_raw(
        sb, route.path, json.dumps(route.base).encode(),
        {"Authorization": f"Bearer {key}", "Idempotency-Key": b"k\xff"})
    assert status == 400, payload[:300]
    body = json_envelope(headers, payload)
    assert route.code(body) == route.bad_request
    assert "Idempotency-Key" in route.message(body)


async def test_origin_and_user_agent_that_are_not_utf8(sb: Harness) -> None:
    """Such an Origin is still an origin (one no allow-list matches), not a missing one."""
    bad = {"Origin": b"https://\xffexample.com"}
    for path, body in ((HALO.path, HALO.base), (FLOW_SESSIONS, {})):
        status, headers, payload = await post_raw(
            sb, path, json.dumps(body).encode(), {"Authorization": f"Bearer {WIDGET}", **bad})
        assert status == 403, payload[:300]
        assert _error_code(json_envelope(headers, payload)) == "origin_not_allowed"
    aibot = ROUTES["aibot"]  # a secret key has no origin rule
    status, _, payload = await post_raw(sb, aibot.path, json.dumps(aibot.base).encode(), {
        "Authorization": f"Bearer {SECRET}", "Accept": "application/json", **bad})
    assert status == 200, payload[:300]
    status, _, payload = await post_raw(sb, HALO.path, json.dumps(HALO.base).encode(), {
        "Authorization": f"Bearer {WIDGET}", "User-Agent": b"bot\xff/1.0"})
    assert status == 200, payload[:300]


# -- sizes ----------------------------------------------------------------------------------


async def test_flow_body_over_the_http_limit_is_its_413_envelope(sb: Harness) -> None:
    key = await key_for(sb, ROUTES["flow-messages"])
    oversized = b" " * (limits.MAX_REQUEST_BODY_BYTES + 1)
    for path, token in ((FLOW_MESSAGES, key), (FLOW_SESSIONS, WIDGET)):
        async with sb.http.post(path, data=io.BytesIO(oversized), headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json"}) as resp:
            assert resp.status == 413
            assert resp.content_type == "application/json"
            assert (await resp.json())["error"]["code"] == "payload_too_large"


def _numbers(count: int) -> bytes:
    """A JSON array of `count` numbers: ~4 bytes each as JSON, 11 as a protobuf Struct."""
    return b"[" + b"0.5," * (count - 1) + b"0.5]"


# (path, key, body around the array, reads the envelope's code)
TOO_LARGE: dict[str, tuple[str, str, Callable[[bytes], bytes], Callable[[Any], str]]] = {
    "halo": (HALO.path, WIDGET, lambda a: b'{"message": "hi", "custom_fields": {"a": ' + a
             + b'}}', _error_code),
    "halo-stream": ("/api/sdk/chat/stream", WIDGET,
                    lambda a: b'{"message": "hi", "context": {"k": {"value": ' + a + b'}}}',
                    _error_code),
    "aibot": (ROUTES["aibot"].path, SECRET,
              lambda a: b'{"messages": [{"role": "user", "content": "hi"}], "tools": '
              b'[{"name": "t", "parameters": {"a": ' + a + b'}}]}', lambda b: str(b["code"])),
    "flow-messages": (FLOW_MESSAGES, "session",
                      lambda a: b'{"text": "hi", "intentName": "order_status", "variables": '
                      b'{"a": ' + a + b'}}', _error_code),
}


async def _post_too_large(sb: Harness, name: str, count: int) -> tuple[int, str, str]:
    """(status, the envelope's code or "", the response text)."""
    path, key, wrap, code = TOO_LARGE[name]
    if key == "session":
        key = await key_for(sb, ROUTES["flow-messages"])
    async with sb.http.post(path, data=io.BytesIO(wrap(_numbers(count))), headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/json",
            "Accept": "application/json"}) as resp:
        text = await resp.text()
        if resp.content_type != "application/json" or resp.status == 200:
            return resp.status, "", text
        return resp.status, code(json.loads(text)), text


async def test_request_over_the_grpc_limit_is_413_not_a_transport_error(sb: Harness) -> None:
    """The reviewer's case: within the HTTP body limit (~18 MB), but ~50 MiB as protobuf.
    gRPC would refuse it with a reasonless RESOURCE_EXHAUSTED (read as 429) and its own
    message; the shim refuses it first."""
    count = limits.MAX_GRPC_MESSAGE_BYTES // 11 + 1000
    status, code, text = await _post_too_large(sb, "aibot", count)
    assert (status, code) == (413, "payload_too_large"), text
    assert "CLIENT" not in text and "larger than max" not in text


@pytest.mark.parametrize("name", list(TOO_LARGE))
async def test_every_call_helper_checks_the_grpc_limit(sb: Harness, name: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The same check in each call helper (unary, streaming, flow), on a smaller limit so
    the bodies stay small: under the limit the core answers, over it the shim says 413."""
    monkeypatch.setattr(core_client, "MAX_MESSAGE_BYTES", 64 * 1024)
    status, code, text = await _post_too_large(sb, name, 7_000)  # ~77 KB as protobuf
    assert (status, code) == (413, "payload_too_large"), text
    status, _, text = await _post_too_large(sb, name, 3)
    assert status != 413, text


async def test_json_value_count_boundary(sb: Harness) -> None:
    from core.limits import MAX_JSON_VALUES
    from shim.json_body import TOO_MANY

    for count, refused in ((MAX_JSON_VALUES, False), (MAX_JSON_VALUES + 1, True)):
        # Values in a field the dialect ignores still cost parsing: the cap counts them.
        body = '{"message": "hi", "x": [' + ",".join(["0"] * (count - 2)) + "]}"
        async with sb.http.post("/api/sdk/chat", data=io.BytesIO(body.encode()), headers={
                "Authorization": "Bearer sk_demo_secret_key",
                "Content-Type": "application/json"}) as resp:
            text = await resp.text()
            assert (resp.status == 413 and TOO_MANY in text) is refused, (resp.status, text)
