"""Relaying an activity stream of the core (operator events, a visitor's listen stream)
as Server-Sent Events.

The core's first message only says the call was admitted, so a refusal (a bad key,
another visitor's conversation) gets its real status and the route's error envelope
before any byte of the stream. After that each activity is one SSE event: `id:` is its
activity id (the `Last-Event-ID` cursor), `event:` its kind (`message`, `state`), `data:`
its JSON. A comment line is written when the stream has been idle for the heartbeat
interval; a client that leaves ends the core call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import grpc
from aiohttp import web

from shim.core_client import CoreError, decode_error
from shim.sse import DISCONNECT_POLL_S, ClientGone, EventStream, client_gone, heartbeat_interval
from switchboard.v1 import operator_pb2

log = logging.getLogger("switchboard.shim")

ToJson = Callable[[operator_pb2.Activity], dict[str, Any]]
ErrorResponse = Callable[[CoreError], web.Response]


async def _pump(call: Any, queue: asyncio.Queue[Any]) -> None:
    try:
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                queue.put_nowait(None)
                return
            queue.put_nowait(message)
    except grpc.aio.AioRpcError as exc:
        queue.put_nowait(exc)


async def relay_activity(request: web.Request, call: Any, to_json: ToJson,
                         error_response: ErrorResponse) -> web.StreamResponse:
    try:
        try:
            await call.read()  # admitted (or the refusal, raised here)
        except grpc.aio.AioRpcError as exc:
            return error_response(decode_error(exc))
        try:
            stream = await EventStream.open(request)
        except ClientGone:
            return web.Response(status=499)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        pump = asyncio.ensure_future(_pump(call, queue))
        loop = asyncio.get_running_loop()
        idle_since = loop.time()
        interval = heartbeat_interval(request.app)
        try:
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), DISCONNECT_POLL_S)
                except TimeoutError:
                    if client_gone(request):
                        raise ClientGone() from None
                    if loop.time() - idle_since >= interval:
                        idle_since = loop.time()
                        await stream.ping()
                    continue
                if item is None:
                    break
                if isinstance(item, grpc.aio.AioRpcError):
                    error = decode_error(item)
                    await stream.send(json.dumps({"code": error.reason or error.code.lower(),
                                                  "message": "The stream ended."}),
                                      event="error")
                    break
                idle_since = loop.time()
                activity: operator_pb2.Activity = item.activity
                await stream.send(json.dumps(to_json(activity), ensure_ascii=False),
                                  event_id=activity.id, event=activity.kind)
            await stream.close()
        except ClientGone:
            log.info("%s %s: client left the activity stream", request.method, request.path)
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        return stream.response
    finally:
        call.cancel()
