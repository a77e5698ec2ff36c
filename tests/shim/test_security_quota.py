"""Stored data per organisation has a quota, images included (issue #11)."""

from __future__ import annotations

from dataclasses import replace

import grpc
import pytest
from halo_client import post

from core.domain import TurnRequest
from core.quota import request_bytes
from harness import WIDGET, Harness

IMAGE = "data:image/png;base64," + "A" * 4000


async def set_quota(sb: Harness, max_bytes: int) -> None:
    org = await sb.core.store.get_org(sb.org_id)
    assert org is not None
    extra = {**org.settings.extra, "storage": {"max_bytes": max_bytes}}
    await sb.core.store.update_org_settings(sb.org_id, replace(org.settings, extra=extra))


async def test_sends_past_the_quota_are_refused_images_included(sb: Harness) -> None:
    await sb.scripted_agent(reply="ok")
    assert await sb.core.store.stored_bytes(sb.org_id) == 0
    size = request_bytes(TurnRequest(message="hi", images=(IMAGE,)))
    await set_quota(sb, size)  # exactly this one send fits
    status, reply = await post(sb, {"message": "hi", "agent_id": "scripted",
                                    "images": [IMAGE]})
    assert status == 200, reply
    status, reply = await post(sb, {"message": "x", "agent_id": "scripted"})
    assert status == 429, reply
    assert reply["error"]["code"] == "storage_quota_exceeded"
    assert "quota" in reply["error"]["message"]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await sb.chat_once("x", agent="scripted")
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The refused sends stored nothing.
    assert await sb.core.store.stored_bytes(sb.org_id) >= size
    await set_quota(sb, 0)  # unlimited
    status, _ = await post(sb, {"message": "x", "agent_id": "scripted"})
    assert status == 200


async def test_flow_messages_count_against_the_quota(sb: Harness) -> None:
    await set_quota(sb, 1)
    async with sb.http.post("/api/public/v1/chat/sessions", json={}, headers={
            "Authorization": f"Bearer {WIDGET}"}) as resp:
        token = (await resp.json())["token"]
    async with sb.http.post("/api/public/v1/chat/messages", json={
            "text": "I'd like to check my order", "intentName": "order_status"},
            headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 429
        assert "storage_quota_exceeded" in await resp.text()
