"""Action and block payloads (protobuf Structs, whose map order differs between
processes) are rendered with sorted keys, so a replay after a restart or on another shim
is byte-identical to the original."""

from __future__ import annotations

import json

from harness import WIDGET, Harness

PAYLOAD = {"zeta": 1, "alpha": {"yank": True, "beta": [3, {"q": 1, "c": 2}]}, "mid": "x"}
SORTED = json.dumps(PAYLOAD, sort_keys=True, separators=(",", ":"))


async def test_halo_action_payloads_have_sorted_keys_in_reply_and_stream(sb: Harness) -> None:
    await sb.scripted_agent("acts", reply="ok", actions=[{"type": "card", "payload": PAYLOAD}])
    headers = {"Authorization": f"Bearer {WIDGET}"}
    async with sb.http.post("/api/sdk/chat", json={"message": "hi", "agent_id": "acts"},
                            headers=headers) as resp:
        raw = await resp.text()
        assert resp.status == 200, raw
    assert json.dumps(json.loads(raw)["actions"][0]["payload"], separators=(",", ":")) == SORTED
    async with sb.http.post("/api/sdk/chat/stream", json={"message": "hi", "agent_id": "acts"},
                            headers=headers) as resp:
        streamed = await resp.text()
        assert resp.status == 200, streamed
    assert SORTED in streamed
