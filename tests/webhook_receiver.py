"""A webhook receiver on an ephemeral port, for tests: it checks every request's
`Switchboard-Signature` as docs/webhooks.md tells receivers to, keeps what arrived on the
wire (duplicates included) and the events once per id, and can be taken down, brought
back on the same port, made to fail or to hang."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from core.outbox.signing import SIGNATURE_HEADER, SignatureError, verify


class Receiver:
    def __init__(self, secret: str, now: Callable[[], int]) -> None:
        self.secret = secret
        self.now = now  # Unix seconds, the same clock the dispatcher signs with
        self.port = 0
        self.wire: list[str] = []  # event ids in arrival order (retries included)
        self.events: dict[str, dict[str, Any]] = {}  # accepted once per id, in order
        self.rejected: list[str] = []  # why a request was refused (bad signature)
        self.answer = 200  # status for a verified request (500: "fail")
        self.fail_first_attempt = False  # 500 on the first arrival of each id
        self.refuse: set[str] = set()  # ids always answered 503
        self.hang: asyncio.Event | None = None  # set: hanging requests return
        self.hanging = 0
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        server = self._site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Down: connections are refused until `start()` again (same port)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = self._site = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify(self.secret, request.headers.get(SIGNATURE_HEADER, ""), body, self.now())
        except SignatureError as exc:
            self.rejected.append(str(exc))
            return web.Response(status=400, text=str(exc))
        event = json.loads(body)
        first = event["id"] not in self.wire
        self.wire.append(event["id"])
        self.arrived.set()
        if self.hang is not None:
            self.hanging += 1
            try:
                await self.hang.wait()
            finally:
                self.hanging -= 1
        if event["id"] in self.refuse:
            return web.Response(status=503, text="receiver says no")
        if self.answer >= 300 or (self.fail_first_attempt and first):
            return web.Response(status=self.answer if self.answer >= 300 else 500,
                                text="receiver says no")
        # Dedupe by id: a retry of an event already handled is acknowledged, not redone.
        self.events.setdefault(event["id"], event)
        return web.Response(status=204)

    def types(self) -> list[str]:
        return [e["type"] for e in self.events.values()]
