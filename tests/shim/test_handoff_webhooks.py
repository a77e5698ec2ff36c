"""Handoff transitions reach webhooks: each one writes its event in its own transaction
(core.outbox), delivered signed and in order per conversation, with the operator named."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from halo_client import post
from handoff_client import op
from webhook_receiver import Receiver

from core.clock import FixedClock
from core.outbox.endpoints import WebhookEndpoint
from core.outbox.events import (
    CONVERSATION_CLOSED,
    HANDOFF_CLAIMED,
    HANDOFF_RELEASED,
    HANDOFF_REQUESTED,
    MESSAGE_CREATED,
)
from harness import Harness

WEBHOOK_SECRET = "whsec_" + "h" * 40
HANDOFF_EVENTS = (HANDOFF_REQUESTED, HANDOFF_CLAIMED, HANDOFF_RELEASED, CONVERSATION_CLOSED,
                  MESSAGE_CREATED)


@pytest.fixture
async def wired(tmp_path: Path) -> AsyncIterator[tuple[Harness, Receiver]]:
    clock = FixedClock()
    receiver = Receiver(WEBHOOK_SECRET, lambda: int(clock.now().timestamp()))
    await receiver.start()
    sb = await Harness.start(tmp_path, clock=clock)
    await sb.scripted_agent("helper", reply="The bot answers.")
    await sb.core.store.create_webhook(WebhookEndpoint(
        "we_handoff", sb.org_id, receiver.url, WEBHOOK_SECRET, HANDOFF_EVENTS, clock.now()))
    try:
        yield sb, receiver
    finally:
        await sb.stop()
        await receiver.stop()


async def test_each_handoff_transition_is_a_signed_webhook_event(
        wired: tuple[Harness, Receiver]) -> None:
    sb, receiver = wired
    status, body = await post(sb, {"message": "I need a person", "mode": "livehelp",
                                   "agent_id": "helper"})
    assert status == 200, body
    session = body["session_id"]
    for method, path, payload in (
            ("POST", f"/conversations/{session}/claim", {"operator_name": "Dana"}),
            ("POST", f"/conversations/{session}/messages",
             {"text": "Hi, Dana here.", "operator_name": "Dana"}),
            ("POST", f"/conversations/{session}/release", {"operator_name": "Dana"}),
            ("POST", f"/conversations/{session}/handoff", {}),
            ("POST", f"/conversations/{session}/close", {"operator_name": "Dana"})):
        code, answer = await op(sb, method, path, body=payload)
        assert code in (200, 201), (path, answer)
    await asyncio.wait_for(sb.core.webhooks.settle(), 30)
    assert not receiver.rejected  # every signature verified
    got = [(e["type"], e["data"]) for e in receiver.events.values()
           if e["type"] != MESSAGE_CREATED or e["data"]["message"]["role"] == "operator"]
    assert [t for t, _ in got] == [
        HANDOFF_REQUESTED, HANDOFF_CLAIMED, MESSAGE_CREATED, HANDOFF_RELEASED,
        HANDOFF_REQUESTED, CONVERSATION_CLOSED]
    assert got[0][1]["state"] == "waiting" and got[0][1]["reason"]
    assert got[1][1]["operator"] == "Dana"
    assert got[2][1]["message"]["operator"] == "Dana"
    assert got[2][1]["message"]["content"] == "Hi, Dana here."
    assert got[4][1]["reason"] == "api"
    assert got[5][1]["operator"] == "Dana"
