"""Two cores on one PostgreSQL database, each with its dispatcher running: every event
reaches the receiver once on the wire (the cores' claims never overlap) and in order per
conversation, whichever core wrote it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from webhook_receiver import Receiver

from core.outbox.endpoints import WebhookEndpoint
from harness import Harness

SECRET = "whsec_" + "p" * 40
TURNS_PER_CORE = 6


async def test_two_dispatchers_send_each_event_once(tmp_path: Path, pg_url: str) -> None:
    receiver = Receiver(SECRET, lambda: int(time.time()))
    await receiver.start()
    one = await Harness.start(tmp_path / "one", database=pg_url)
    two = await Harness.start(tmp_path / "two", database=pg_url)
    try:
        await one.scripted_agent()
        await one.core.store.create_webhook(WebhookEndpoint(
            "we_1", one.org_id, receiver.url, SECRET, (), one.core.clock.now()))

        async def chat(sb: Harness, n: int, conversation: str = "") -> str:
            reply = await sb.chat_once(f"turn {n}", agent="scripted",
                                       conversation_id=conversation)
            return reply.conversation_id

        # Each conversation's turns alternate between the cores.
        conversations = await asyncio.gather(*(chat(one, n) for n in range(TURNS_PER_CORE)))
        await asyncio.gather(*(chat(two, n, c) for n, c in enumerate(conversations)))
        expected = TURNS_PER_CORE * (4 + 3)
        deadline = time.monotonic() + 60  # a bound for a loaded machine, not a speed check
        while len(receiver.events) < expected and time.monotonic() < deadline:
            await asyncio.gather(one.core.webhooks.settle(), two.core.webhooks.settle())
        # The receiver counts a request before its answer reaches the dispatcher.
        await asyncio.gather(one.core.webhooks.settle(), two.core.webhooks.settle())
        assert len(receiver.events) == expected, (len(receiver.events), len(receiver.wire))
        assert len(receiver.wire) == expected, sorted(receiver.wire)  # never sent twice
        assert not receiver.rejected
        for c in conversations:
            kinds = [e["type"] for e in receiver.events.values() if c in str(e["data"])]
            assert kinds == ["conversation.created", "message.created", "message.created",
                             "turn.completed", "message.created", "message.created",
                             "turn.completed"]
        assert one.core.webhooks.attempts + two.core.webhooks.attempts == expected
    finally:
        await two.stop()
        await one.stop()
        await receiver.stop()
