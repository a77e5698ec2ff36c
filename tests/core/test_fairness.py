"""A provider that never yields (scripted, `delay_ms: 0`, a long reply) does not starve
other tenants: the agent loop gives the event loop a turn between model chunks."""

from __future__ import annotations

import asyncio

from harness import Harness, auth
from switchboard.v1 import chat_pb2

TOKENS = 40_000


async def test_a_long_zero_delay_reply_does_not_starve_other_requests(sb: Harness) -> None:
    await sb.scripted_agent("firehose", reply="w " * TOKENS, delay_ms=0)
    call = sb.chat.StreamChat(chat_pb2.StreamChatRequest(turn=chat_pb2.TurnInput(
        message="go", agent="firehose")), metadata=auth())
    stream = aiter(call)
    first = (await anext(stream)).event
    live = sb.core.engine.live.get(first.conversation_id)
    assert live is not None
    try:
        # Another tenant's request, served while the reply is being generated.
        async with sb.http.get("/healthz") as resp:
            assert resp.status == 200
        assert not live.done
        assert len(live.events) < TOKENS
    finally:
        call.cancel()
        await asyncio.wait_for(live.finished.wait(), timeout=30)
