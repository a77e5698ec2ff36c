"""sdk.js in a real browser: text and actions, a dropped connection resumed by byte
offset, typed errors with Retry-After, abort and the stop endpoint."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import aiohttp
from aiohttp import web
from browser_harness import HostPages, run_scenario

from harness import SECRET, WIDGET, Harness, with_engine
from switchboard.v1 import chat_pb2, events_pb2

REPLY = ("Grüße aus Köln 👋 — the answer goes on with ünïcödé words, a few more of them, "
         "until the very end of it.")
ACTIONS = [
    {"type": "citation", "payload": {"title": "Ünïcödé", "url": "https://help.example/u"}},
    {"type": "highlight", "payload": {"selector": "#plan", "note": "\u2728 here"}},
]
STREAM = "/api/sdk/chat/stream"
# Not forwarded by a proxy (RFC 9110 §7.6.1), plus what aiohttp sets itself.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length",
              "upgrade", "te", "trailer", "proxy-connection"}


class CuttingProxy:
    """Forwards everything to the shim, writing bodies in `piece`-byte writes (so records
    and UTF-8 characters arrive split), and drops the connection of the first stream
    response after `cut_after` body bytes, with no chunked terminator: what a phone
    losing its network mid-answer looks like to the browser."""

    def __init__(self, upstream: str, cut_after: int, piece: int = 3) -> None:
        self.upstream = upstream
        self.cut_after = cut_after
        self.piece = piece
        self.requests: list[str] = []
        self._cut_done = False
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> CuttingProxy:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._session = aiohttp.ClientSession(auto_decompress=False)
        return self

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        self.requests.append(f"{request.method} {request.path_qs}")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        cut = None
        if request.method == "POST" and request.path == STREAM and not self._cut_done:
            cut, self._cut_done = self.cut_after, True
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers,
            data=await request.read(), allow_redirects=False,
        ) as upstream:
            response = web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP})
            await response.prepare(request)
            sent = 0
            async for chunk in upstream.content.iter_any():
                for start in range(0, len(chunk), self.piece):
                    part = chunk[start:start + self.piece]
                    if cut is not None and sent + len(part) >= cut:
                        await response.write(part[:cut - sent])
                        # Let the browser hand these bytes to the page before the error
                        # (Chromium drops what it buffered when the body fails), so the
                        # resume offset lands inside the emoji, as intended.
                        await asyncio.sleep(0.3)
                        # close() flushes what was written, then drops the connection.
                        assert request.transport is not None
                        request.transport.close()
                        upstream.close()
                        return response
                    await response.write(part)
                    sent += len(part)
                    await asyncio.sleep(0.002)
            await response.write_eof()
            return response


def _blank(host: HostPages) -> str:
    return host.add("blank.html", "<!doctype html><title>sdk</title><link rel=icon href='data:,'>")


async def test_text_actions_and_result(sb: Harness, host: HostPages, cdp: str) -> None:
    await sb.scripted_agent(reply=REPLY, delay_ms=5, actions=ACTIONS)
    seen = await run_scenario(cdp, "sdk", page=_blank(host), sdkUrl=sb.base_url + "/sdk.js",
                              baseUrl=sb.base_url, key=WIDGET, agent="scripted",
                              question="hi")
    result = seen["result"]
    assert result["text"] == REPLY and "".join(seen["deltas"]) == REPLY
    assert all("\x1e" not in d and "__ACTION" not in d for d in seen["deltas"])
    assert seen["actions"] == ACTIONS and result["actions"] == ACTIONS
    assert result["sessionId"].startswith("chat_") and result["agentId"]


async def test_dropped_connection_resumes_with_the_exact_text(
        tmp_path: Path, host: HostPages, cdp: str) -> None:
    # The turn must outlive its dropped connection long enough to be resumed.
    sb = await Harness.start(tmp_path, engine=with_engine(detach_grace_s=10.0))
    proxy = await CuttingProxy(sb.base_url, cut_after=REPLY.encode().index(
        "👋".encode()) + 2).start()  # inside the 4-byte emoji
    try:
        await sb.scripted_agent(reply=REPLY, delay_ms=40, actions=ACTIONS)
        seen = await run_scenario(cdp, "sdk", page=_blank(host),
                                  sdkUrl=sb.base_url + "/sdk.js", baseUrl=proxy.url,
                                  key=WIDGET, agent="scripted", question="hi")
        assert "error" not in seen, seen
        assert seen["result"]["text"] == REPLY
        assert "".join(seen["deltas"]) == REPLY  # nothing shown twice, nothing missing
        assert seen["result"]["actions"] == ACTIONS and seen["actions"] == ACTIONS
        session = seen["result"]["sessionId"]
        posts = [r for r in proxy.requests if r.startswith("POST ")]
        resumes = [r for r in proxy.requests if r.startswith("GET /api/sdk/chat/stream/resume")]
        assert posts == [f"POST {STREAM}"]
        (resumed,) = resumes
        prefix = f"GET /api/sdk/chat/stream/resume?session_id={session}&offset="
        assert resumed.startswith(prefix)
        # The bytes the page had received: normally all of them, inside the emoji (the
        # proxy waits for the browser to hand them over); under heavy load Chromium may
        # have dropped its last buffered piece with the failed body, which is fine too.
        assert 0 < int(resumed[len(prefix):]) <= proxy.cut_after
        # One turn on the server: the resume attached, it did not ask again.
        listed = await sb.chat.ListMessages(
            chat_pb2.ListMessagesRequest(conversation_id=session),
            metadata=[("authorization", f"Bearer {SECRET}")])
        assert [(m.role, m.content) for m in listed.messages] == [("user", "hi"),
                                                                  ("assistant", REPLY)]
    finally:
        await proxy.stop()
        await sb.stop()


async def test_rate_limit_is_a_typed_error_with_retry_after(
        sb: Harness, host: HostPages, cdp: str) -> None:
    await sb.scripted_agent(reply="ok")
    org = await sb.core.store.get_org(sb.org_id)
    assert org is not None
    extra = {**org.settings.extra, "rate_limit": {"rps": 0.01, "burst": 2}}
    await sb.core.store.update_org_settings(sb.org_id, replace(org.settings, extra=extra))
    seen = await run_scenario(cdp, "sdk", page=_blank(host), sdkUrl=sb.base_url + "/sdk.js",
                              baseUrl=sb.base_url, key=WIDGET, agent="scripted",
                              question=None, burst=3)
    ok1, ok2, limited = seen["burst"]
    assert ok1 == ok2 == "ok"
    assert limited["name"] == "RateLimitError" and limited["isRateLimit"]
    assert limited["isSwitchboardError"] and limited["code"] == "rate_limited"
    assert limited["status"] == 429
    # Read cross-origin: the shim exposes Retry-After to pages.
    assert isinstance(limited["retryAfter"], int) and limited["retryAfter"] >= 1


async def test_abort_stops_the_turn(tmp_path: Path, host: HostPages, cdp: str) -> None:
    # With the default reattach grace (as in production) the aborted connection only
    # detaches the turn; it is the SDK's stop call that ends it, as `stopped`. (With no
    # grace the disconnect itself would cancel it first.)
    sb = await Harness.start(tmp_path, engine=with_engine(detach_grace_s=10.0))
    try:
        await sb.scripted_agent(slug="slow", reply="word " * 200, delay_ms=60)
        seen = await run_scenario(cdp, "sdk", page=_blank(host),
                                  sdkUrl=sb.base_url + "/sdk.js", baseUrl=sb.base_url,
                                  key=WIDGET, question=None, abortAgent="slow",
                                  abortAfterText=10)
        abort = seen["abort"]
        assert abort["name"] == "AbortError" and len(abort["seen"]) >= 10
        listed = await sb.chat.ListMessages(
            chat_pb2.ListMessagesRequest(conversation_id=abort["sessionId"]),
            metadata=[("authorization", f"Bearer {SECRET}")])
        (assistant,) = [m for m in listed.messages if m.role == "assistant"]
        assert assistant.status == events_pb2.TURN_STATUS_STOPPED
        assert assistant.content.startswith(abort["seen"]) and len(assistant.content) < 1000
    finally:
        await sb.stop()
