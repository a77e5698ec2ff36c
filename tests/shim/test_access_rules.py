"""Stop and resume follow the same key rules as sending: the widget key's allowed origins,
and the slug API's secret-key-only rule."""

from __future__ import annotations

from harness import SECRET, WIDGET, Harness

ALLOWED = "http://localhost:3000"
OTHER = "https://evil.example"


async def _halo_session(sb: Harness) -> str:
    async with sb.http.post("/api/sdk/chat", json={"message": "hi", "agent_id": "scripted"},
                            headers={"Authorization": f"Bearer {WIDGET}"}) as resp:
        assert resp.status == 200
        session: str = (await resp.json())["session_id"]
        return session


async def test_halo_resume_and_stop_refuse_a_foreign_origin(sb: Harness) -> None:
    await sb.scripted_agent(reply="private answer")
    session = await _halo_session(sb)
    headers = {"Authorization": f"Bearer {WIDGET}", "Origin": OTHER}
    async with sb.http.get("/api/sdk/chat/stream/resume",
                           params={"session_id": session, "offset": "0"},
                           headers=headers) as resp:
        assert resp.status == 403
        assert "private answer" not in await resp.text()
    async with sb.http.post("/api/sdk/chat/stop", json={"session_id": session},
                            headers=headers) as resp:
        assert resp.status == 403
    allowed = {"Authorization": f"Bearer {WIDGET}", "Origin": ALLOWED}
    async with sb.http.get("/api/sdk/chat/stream/resume",
                           params={"session_id": session, "offset": "0"},
                           headers=allowed) as resp:
        assert resp.status == 200
        assert "private answer" in await resp.text()


async def test_slug_resume_and_stop_need_a_secret_key(sb: Harness) -> None:
    await sb.scripted_agent(reply="server side only")
    async with sb.http.post("/v1/api/chat/scripted", json={"message": "hi"},
                            headers={"Authorization": f"Bearer {SECRET}"}) as resp:
        conversation = (await resp.json())["data"]["conversationId"]
    widget = {"Authorization": f"Bearer {WIDGET}"}
    async with sb.http.get("/v1/api/chat/scripted/stream",
                           params={"conversationId": conversation, "lastEventId": "0"},
                           headers=widget) as resp:
        assert resp.status == 403
        assert (await resp.json())["error"]["name"] == "ForbiddenError"
    async with sb.http.post("/v1/api/chat/scripted/stop",
                            json={"conversationId": conversation}, headers=widget) as resp:
        assert resp.status == 403
    async with sb.http.post("/v1/api/chat/scripted",
                            json={"message": "x", "stream": True,
                                  "conversationId": conversation},
                            headers={**widget, "Last-Event-ID": "0"}) as resp:
        assert resp.status == 403
    async with sb.http.get("/v1/api/chat/scripted/stream",
                           params={"conversationId": conversation, "lastEventId": "0"},
                           headers={"Authorization": f"Bearer {SECRET}"}) as resp:
        assert resp.status == 200
        body = await resp.text()
        assert '{"chunk": " only"}' in body and body.endswith("data: [DONE]\n\n")
