"""Bare grpc.aio baselines: the physical limit of Switchboard's own stack.

`EchoChatService` answers `switchboard.v1.ChatService` with no interceptor, no auth, no
engine and no store: `Chat` is a unary echo (one ChatResponse built from the request) and
`StreamChat` a unary-stream echo (turn started, `deltas` text deltas, completed: the same
events the core sends for the 100-delta benchmark agent). Same messages, same
serialisation, same grpc.aio server and same load tool as the core, so the ratio between
the two is what Switchboard's own work costs.

`idle_sse_app` is the bare aiohttp baseline of the idle-stream row: a handler that opens
an SSE response and waits for its client to leave, polling as the shim's streams do.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from aiohttp import web

from switchboard.v1 import chat_pb2, events_pb2

SERVICE = "switchboard.v1.ChatService"
CONVERSATION_ID = "00000000-0000-4000-8000-000000000001"
TURN_ID = "00000000-0000-4000-8000-000000000002"
AGENT_ID = "00000000-0000-4000-8000-000000000003"
IDLE_SSE_PATH = "/idle-sse"
DISCONNECT_POLL_S = 0.5  # as shim.sse polls an idle stream's client


class EchoChatService:
    """The two baseline handlers."""

    def __init__(self, deltas: int = 100, token: str = " tok") -> None:
        self.deltas = deltas
        self.token = token

    async def chat(self, request: chat_pb2.ChatRequest, context: Any) -> chat_pb2.ChatResponse:
        text = "You said: " + request.turn.message
        return chat_pb2.ChatResponse(
            conversation_id=CONVERSATION_ID, turn_id=TURN_ID, agent_id=AGENT_ID,
            completed=events_pb2.Completed(text=text), last_seq=3,
        )

    async def stream_chat(
        self, request: chat_pb2.StreamChatRequest, context: Any
    ) -> AsyncIterator[chat_pb2.StreamChatResponse]:
        seq = 0

        def event(**kind: Any) -> chat_pb2.StreamChatResponse:
            return chat_pb2.StreamChatResponse(event=events_pb2.ChatEvent(
                seq=seq, conversation_id=CONVERSATION_ID, turn_id=TURN_ID, **kind))

        seq += 1
        yield event(turn_started=events_pb2.TurnStarted(
            conversation_id=CONVERSATION_ID, agent_id=AGENT_ID, turn_id=TURN_ID))
        for _ in range(self.deltas):
            seq += 1
            yield event(text_delta=events_pb2.TextDelta(text=self.token))
        seq += 1
        yield event(completed=events_pb2.Completed(text=self.token * self.deltas))


def echo_handler(service: EchoChatService) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(SERVICE, {
        "Chat": grpc.unary_unary_rpc_method_handler(
            service.chat,
            request_deserializer=chat_pb2.ChatRequest.FromString,
            response_serializer=chat_pb2.ChatResponse.SerializeToString,
        ),
        "StreamChat": grpc.unary_stream_rpc_method_handler(
            service.stream_chat,
            request_deserializer=chat_pb2.StreamChatRequest.FromString,
            response_serializer=chat_pb2.StreamChatResponse.SerializeToString,
        ),
    })


async def start_echo_server(host: str = "127.0.0.1", port: int = 0,
                            deltas: int = 100) -> tuple[grpc.aio.Server, int]:
    """A started bare grpc.aio server and its port."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((echo_handler(EchoChatService(deltas)),))
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server, bound


async def idle_sse(request: web.Request) -> web.StreamResponse:
    """Opens an event stream and holds it, writing nothing, until the client leaves."""
    response = web.StreamResponse(status=200, headers={
        "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"})
    await response.prepare(request)
    # Polling, not an event: aiohttp signals no disconnect to a handler that is not reading.
    while request.transport is not None and not request.transport.is_closing():  # noqa: ASYNC110
        await asyncio.sleep(DISCONNECT_POLL_S)
    return response


def idle_sse_app() -> web.Application:
    app = web.Application()
    app.router.add_post(IDLE_SSE_PATH, idle_sse)
    return app
