"""switchboard.v1.ChatService: thin translation between proto and the turn engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

from core import limits
from core.engine import admission
from core.engine.admission import Access
from core.engine.live import LiveTurn
from core.engine.turns import TurnEngine, fold
from core.errors import Code, Reason, SwitchboardError
from core.events import Event, StreamError
from core.grpcapi import convert
from core.grpcapi.auth import current_principal
from core.grpcapi.errors import abort
from switchboard.v1 import chat_pb2, chat_pb2_grpc

log = logging.getLogger("switchboard.grpc")

# grpcio is untyped; the alias documents what the handlers receive.
Context: TypeAlias = Any  # grpc.aio.ServicerContext


def error_of(event: Event) -> SwitchboardError | None:
    body = event.body
    if isinstance(body, StreamError):
        return SwitchboardError(Code[body.code], Reason(body.reason), body.message)
    return None


class ChatServicer(chat_pb2_grpc.ChatServiceServicer):
    def __init__(self, engine: TurnEngine) -> None:
        self.engine = engine

    async def _stream(self, live: LiveTurn, after_seq: int = 0) -> AsyncIterator[Event]:
        async for event in live.follow(after_seq):
            yield event

    async def Chat(self, request: chat_pb2.ChatRequest, context: Context) -> chat_pb2.ChatResponse:
        try:
            live = await self.engine.start_turn(
                current_principal(), convert.turn_request(request.turn)
            )
            result = await self.engine.run_to_end(live)
        except SwitchboardError as exc:
            await abort(context, exc)
            raise
        if result.error is not None:
            err = error_of(result.events[-1])
            assert err is not None
            await abort(context, err)
        return convert.chat_response(result)

    async def StreamChat(
        self, request: chat_pb2.StreamChatRequest, context: Context
    ) -> AsyncIterator[chat_pb2.StreamChatResponse]:
        principal = current_principal()
        try:
            async with self.engine.stream_slot(principal):
                live = await self.engine.start_turn(principal, convert.turn_request(request.turn))
                async for event in live.follow(0):
                    reply = chat_pb2.StreamChatResponse()
                    convert.fill_event(reply.event, event)
                    yield reply
                    err = error_of(event)
                    if err is not None:
                        raise err
        except SwitchboardError as exc:
            await abort(context, exc)

    async def Converse(
        self, request_iterator: AsyncIterator[chat_pb2.ConverseRequest], context: Context
    ) -> AsyncIterator[chat_pb2.ConverseResponse]:
        """Turns run one after another; a stop message acts at once, even mid-turn."""
        principal = current_principal()
        starts: asyncio.Queue[chat_pb2.TurnInput | None] = asyncio.Queue()

        async def read() -> None:
            # A stop is admitted as the stream's latest turn was (its origin and user).
            access = Access()
            try:
                async for msg in request_iterator:
                    if msg.HasField("start_turn"):
                        t = msg.start_turn
                        access = Access(t.origin, t.dialect, t.user_id, t.user_token)
                        await starts.put(msg.start_turn)
                    elif msg.HasField("stop"):
                        with contextlib.suppress(SwitchboardError):
                            await self.engine.stop(principal, msg.stop.conversation_id,
                                                   access)
            finally:
                await starts.put(None)

        reader = asyncio.create_task(read())
        try:
            async with self.engine.stream_slot(principal):
                while (turn_input := await starts.get()) is not None:
                    live = await self.engine.start_turn(
                        principal, convert.turn_request(turn_input)
                    )
                    async for event in live.follow(0):
                        yield chat_pb2.ConverseResponse(event=convert.event_pb(event))
        except SwitchboardError as exc:
            await abort(context, exc)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def StopTurn(
        self, request: chat_pb2.StopTurnRequest, context: Context
    ) -> chat_pb2.StopTurnResponse:
        try:
            stopped, turn_id = await self.engine.stop(
                current_principal(), request.conversation_id,
                Access(request.origin, request.dialect, request.user_id, request.user_token),
            )
        except SwitchboardError as exc:
            await abort(context, exc)
            raise
        return chat_pb2.StopTurnResponse(stopped=stopped, turn_id=turn_id)

    async def ResumeStream(
        self, request: chat_pb2.ResumeStreamRequest, context: Context
    ) -> AsyncIterator[chat_pb2.ResumeStreamResponse]:
        principal = current_principal()
        try:
            async with self.engine.stream_slot(principal):
                events = self.engine.follow_conversation(
                    principal, request.conversation_id, request.after_seq, request.latest_turn,
                    Access(request.origin, request.dialect, request.user_id, request.user_token),
                )
                async for event in events:
                    resumed = chat_pb2.ResumeStreamResponse()
                    convert.fill_event(resumed.event, event)
                    yield resumed
        except SwitchboardError as exc:
            await abort(context, exc)

    async def GetConversation(
        self, request: chat_pb2.GetConversationRequest, context: Context
    ) -> chat_pb2.GetConversationResponse:
        try:
            # Reads pass the same admission as sends: Origin, key kind, owner.
            conv = await admission.admit_conversation(
                self.engine.store, current_principal(), request.conversation_id,
                Access(request.origin, "", request.user_id, request.user_token),
            )
        except SwitchboardError as exc:
            await abort(context, exc)
            raise
        return chat_pb2.GetConversationResponse(conversation=convert.conversation_pb(conv))

    async def ListMessages(
        self, request: chat_pb2.ListMessagesRequest, context: Context
    ) -> chat_pb2.ListMessagesResponse:
        principal = current_principal()
        try:
            conv = await admission.admit_conversation(
                self.engine.store, principal, request.conversation_id,
                Access(request.origin, "", request.user_id, request.user_token),
            )
            size = request.page_size or limits.LIST_MESSAGES_DEFAULT_PAGE
            if not 0 < size <= limits.LIST_MESSAGES_MAX_PAGE:
                raise SwitchboardError(
                    Code.INVALID_ARGUMENT, Reason.INVALID_ARGUMENT,
                    f"page_size must be between 1 and {limits.LIST_MESSAGES_MAX_PAGE}.",
                )
            try:
                after = int(request.page_token or "0")
                if not 0 <= after < 2**63:
                    raise ValueError(after)
            except ValueError:
                raise SwitchboardError(
                    Code.INVALID_ARGUMENT, Reason.INVALID_ARGUMENT, "page_token is invalid."
                ) from None
        except SwitchboardError as exc:
            await abort(context, exc)
            raise
        messages, next_cursor = await self.engine.store.list_messages(
            principal.org_id, conv.id, size, after
        )
        return chat_pb2.ListMessagesResponse(
            messages=[convert.message_pb(m) for m in messages],
            next_page_token=str(next_cursor) if next_cursor else "",
        )

    async def CheckKey(self, request: chat_pb2.CheckKeyRequest,
                       context: Context) -> chat_pb2.CheckKeyResponse:
        # The interceptor has authenticated the call by the time this runs.
        return chat_pb2.CheckKeyResponse(key_kind=current_principal().key_kind)


__all__ = ["ChatServicer", "fold"]
