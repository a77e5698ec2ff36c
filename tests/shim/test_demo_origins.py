"""The demo organisation accepts its widget key from any local port (a newcomer's dev server,
the demo page, a test page) and from nowhere else."""

from __future__ import annotations

import pytest
from halo_client import post, stream

from harness import Harness


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
