"""The Halo dialect carries the kb agent's calibrated confidence and escalation: the
`confidence` field is the provider's number, and an `escalation` action is there exactly
when it is below the agent's threshold (over a real server and socket)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.knowledge import load_knowledge_base
from core.providers.kb import KbProvider
from harness import WIDGET, Harness

KB_DIR = Path(__file__).resolve().parents[2] / "src" / "core" / "demo" / "kb"


async def halo(sb: Harness, message: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.post(
        f"{sb.base_url}/api/sdk/chat",
        json={"message": message},
        headers={"Authorization": f"Bearer {WIDGET}"},
    ) as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


@pytest.mark.parametrize(
    "message", ["What are your business hours?", "Tell me a long story"]
)
async def test_halo_confidence_and_escalation_follow_the_kb_agent(
    sb: Harness, message: str
) -> None:
    body = await halo(sb, message)
    expected = KbProvider(load_knowledge_base(KB_DIR)).answer(message)
    assert body["confidence"] == pytest.approx(expected.confidence, abs=1e-3)
    types = [a["type"] for a in body["actions"]]
    assert ("escalation" in types) == (expected.confidence < 0.5)
    assert ("citation" in types) == (not expected.escalate)
