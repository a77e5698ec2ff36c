"""CORS on the Halo routes: generic preflights, reflected origins, exposed headers, and the
core's per-organisation allow-list (403 from other origins with a widget key)."""

from __future__ import annotations

from halo_client import CHAT, STREAM, post, stream

from harness import SECRET, Harness

ALLOWED = "http://localhost:3000"  # on the demo organisation's list
OTHER = "https://evil.example"


async def test_preflight_is_answered_for_any_origin(sb: Harness) -> None:
    for path in (CHAT, STREAM):
        async with sb.http.options(path, headers={
            "Origin": OTHER, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        }) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == OTHER
            assert "POST" in resp.headers["Access-Control-Allow-Methods"]
            allowed = resp.headers["Access-Control-Allow-Headers"].lower()
            for header in ("authorization", "content-type", "idempotency-key"):
                assert header in allowed
            assert int(resp.headers["Access-Control-Max-Age"]) > 0
            assert "Origin" in resp.headers["Vary"]
            assert "Access-Control-Allow-Credentials" not in resp.headers


async def test_allowed_origin_is_reflected_and_headers_exposed(sb: Harness) -> None:
    await sb.scripted_agent(reply="hi")
    status, hdrs, _ = await stream(sb, {"message": "x", "agent_id": "scripted"},
                                   Origin=ALLOWED)
    assert status == 200
    assert hdrs["Access-Control-Allow-Origin"] == ALLOWED
    exposed = {h.strip() for h in hdrs["Access-Control-Expose-Headers"].split(",")}
    assert {"X-Session-Id", "X-Agent-Id"} <= exposed


async def test_widget_key_from_another_origin_is_403(sb: Harness) -> None:
    await sb.scripted_agent(reply="hi")
    status, reply = await post(sb, {"message": "x", "agent_id": "scripted"}, Origin=OTHER)
    assert status == 403 and reply["error"]["code"] == "origin_not_allowed"
    status, hdrs, raw = await stream(sb, {"message": "x", "agent_id": "scripted"},
                                     Origin=OTHER)
    assert status == 403 and "origin_not_allowed" in raw
    # The page can still read why it was refused.
    assert hdrs["Access-Control-Allow-Origin"] == OTHER


async def test_secret_keys_and_server_calls_are_not_origin_bound(sb: Harness) -> None:
    await sb.scripted_agent(reply="hi")
    status, _ = await post(sb, {"message": "x", "agent_id": "scripted"}, key=SECRET,
                           Origin=OTHER)
    assert status == 200
    status, _ = await post(sb, {"message": "x", "agent_id": "scripted"})  # no Origin
    assert status == 200
