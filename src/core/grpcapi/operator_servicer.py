"""switchboard.v1.OperatorService and ListenService: thin translation between proto and
the handoff engine (core.engine.handoff), and their registrar for CoreServer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeAlias, TypeVar

import grpc

from core.engine.admission import Access
from core.engine.handoff import Handoffs
from core.errors import SwitchboardError
from core.grpcapi import convert
from core.grpcapi.auth import current_principal
from core.grpcapi.errors import abort
from core.grpcapi.services import CoreParts
from switchboard.v1 import operator_pb2, operator_pb2_grpc

Context: TypeAlias = Any  # grpc.aio.ServicerContext (untyped in grpc stubs)
T = TypeVar("T")

OPERATOR_SERVICE = operator_pb2.DESCRIPTOR.services_by_name["OperatorService"].full_name
LISTEN_SERVICE = operator_pb2.DESCRIPTOR.services_by_name["ListenService"].full_name

async def _answer(context: Context, pending: Awaitable[T]) -> T:
    """The result of a Handoffs call, or the RPC aborted with its error."""
    try:
        return await pending
    except SwitchboardError as exc:
        await abort(context, exc)
        raise


class OperatorServicer(operator_pb2_grpc.OperatorServiceServicer):
    def __init__(self, handoffs: Handoffs) -> None:
        self.handoffs = handoffs

    async def ListHandoffs(self, request: operator_pb2.ListHandoffsRequest,
                           context: Context) -> operator_pb2.ListHandoffsResponse:
        try:
            states = [convert.STATE_OF_PB.get(s, "unspecified") for s in request.states]
            entries = await self.handoffs.queue(current_principal(), states,
                                                request.operator_name)
        except SwitchboardError as exc:
            await abort(context, exc)
            raise
        return operator_pb2.ListHandoffsResponse(
            handoffs=[convert.handoff_pb(e.handoff, e) for e in entries])

    async def GetHandoff(self, request: operator_pb2.GetHandoffRequest,
                         context: Context) -> operator_pb2.GetHandoffResponse:
        entry, messages = await _answer(context, self.handoffs.get(
            current_principal(), request.conversation_id, request.operator_name))
        return operator_pb2.GetHandoffResponse(
            handoff=convert.handoff_pb(entry.handoff, entry),
            messages=[convert.message_pb(m) for m in messages])

    async def WatchHandoffs(self, request: operator_pb2.WatchHandoffsRequest,
                            context: Context) -> AsyncIterator[
                                operator_pb2.WatchHandoffsResponse]:
        try:
            activities = await self.handoffs.watch(
                current_principal(),
                request.after_id if request.HasField("after_id") else None,
                request.operator_name)
        except SwitchboardError as exc:
            await abort(context, exc)
            return
        try:
            yield operator_pb2.WatchHandoffsResponse()  # admitted: the stream is following
            async for activity in activities:
                yield operator_pb2.WatchHandoffsResponse(activity=convert.activity_pb(activity))
        finally:
            activities.close()

    async def RequestHandoff(self, request: operator_pb2.RequestHandoffRequest,
                             context: Context) -> operator_pb2.RequestHandoffResponse:
        record = await _answer(context, self.handoffs.request(
            current_principal(), request.conversation_id, request.team, request.reason,
            request.operator_name))
        return operator_pb2.RequestHandoffResponse(handoff=convert.handoff_pb(record))

    async def ClaimHandoff(self, request: operator_pb2.ClaimHandoffRequest,
                           context: Context) -> operator_pb2.ClaimHandoffResponse:
        record = await _answer(context, self.handoffs.claim(
            current_principal(), request.conversation_id, request.operator_name))
        return operator_pb2.ClaimHandoffResponse(handoff=convert.handoff_pb(record))

    async def SendOperatorMessage(
        self, request: operator_pb2.SendOperatorMessageRequest, context: Context
    ) -> operator_pb2.SendOperatorMessageResponse:
        message, activity = await _answer(context, self.handoffs.send(
            current_principal(), request.conversation_id, request.text, request.operator_name))
        return operator_pb2.SendOperatorMessageResponse(
            message=convert.message_pb(message), activity_id=activity.id)

    async def ReleaseHandoff(self, request: operator_pb2.ReleaseHandoffRequest,
                             context: Context) -> operator_pb2.ReleaseHandoffResponse:
        record = await _answer(context, self.handoffs.release(
            current_principal(), request.conversation_id, request.operator_name))
        return operator_pb2.ReleaseHandoffResponse(handoff=convert.handoff_pb(record))

    async def CloseHandoff(self, request: operator_pb2.CloseHandoffRequest,
                           context: Context) -> operator_pb2.CloseHandoffResponse:
        record = await _answer(context, self.handoffs.close(
            current_principal(), request.conversation_id, request.operator_name))
        return operator_pb2.CloseHandoffResponse(handoff=convert.handoff_pb(record))


class ListenServicer(operator_pb2_grpc.ListenServiceServicer):
    def __init__(self, handoffs: Handoffs) -> None:
        self.handoffs = handoffs

    async def ListenConversation(
        self, request: operator_pb2.ListenConversationRequest, context: Context
    ) -> AsyncIterator[operator_pb2.ListenConversationResponse]:
        access = Access(request.origin, "", request.user_id, request.user_token)
        try:
            activities = await self.handoffs.listen(
                current_principal(), request.conversation_id, access,
                request.after_id if request.HasField("after_id") else None)
        except SwitchboardError as exc:
            await abort(context, exc)
            return
        try:
            yield operator_pb2.ListenConversationResponse()  # admitted: following from now
            async for activity in activities:
                yield operator_pb2.ListenConversationResponse(
                    activity=convert.activity_pb(activity))
        finally:
            activities.close()


def register_operator_service(core: CoreParts, server: grpc.aio.Server) -> str:
    """Core registrar: OperatorService and ListenService on the engine's handoffs."""
    handoffs = core.engine.handoffs
    operator_pb2_grpc.add_OperatorServiceServicer_to_server(OperatorServicer(handoffs), server)
    operator_pb2_grpc.add_ListenServiceServicer_to_server(ListenServicer(handoffs), server)
    return OPERATOR_SERVICE
