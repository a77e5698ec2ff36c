"""switchboard.v1.OperatorService and ListenService: thin translation between proto and
the handoff engine (core.engine.handoff), and their registrar for CoreServer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc
from google.protobuf import struct_pb2, timestamp_pb2

from core.engine.admission import Access
from core.engine.handoff import Handoffs, QueueEntry
from core.errors import SwitchboardError
from core.grpcapi import convert
from core.grpcapi.auth import current_principal
from core.grpcapi.errors import to_status
from core.grpcapi.services import CoreParts
from core.handoffs import Activity, HandoffRecord, HandoffState
from switchboard.v1 import operator_pb2, operator_pb2_grpc

Context: TypeAlias = Any  # grpc.aio.ServicerContext (untyped in grpc stubs)

OPERATOR_SERVICE = operator_pb2.DESCRIPTOR.services_by_name["OperatorService"].full_name
LISTEN_SERVICE = operator_pb2.DESCRIPTOR.services_by_name["ListenService"].full_name

STATE_PB = {
    HandoffState.BOT: operator_pb2.HANDOFF_STATE_BOT,
    HandoffState.WAITING: operator_pb2.HANDOFF_STATE_WAITING,
    HandoffState.HUMAN: operator_pb2.HANDOFF_STATE_HUMAN,
    HandoffState.CLOSED: operator_pb2.HANDOFF_STATE_CLOSED,
}
STATE_OF_PB = {v: k for k, v in STATE_PB.items()}


def _struct(data: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(data)
    return s


def _ts(moment: Any) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    t = timestamp_pb2.Timestamp()
    t.FromDatetime(moment)
    return t


def handoff_pb(record: HandoffRecord, entry: QueueEntry | None = None) -> operator_pb2.Handoff:
    out = operator_pb2.Handoff(
        conversation_id=record.conversation_id, state=STATE_PB[record.state],
        team=record.team, ticket_id=record.ticket_id, reason=record.reason,
        operator_id=record.operator_id, operator_name=record.operator_name,
        updated_at=_ts(record.updated_at), requested_at=_ts(record.requested_at),
    )
    if entry is not None:
        out.user_id = entry.conversation.user_id
        out.agent_id = entry.conversation.agent_id
        out.context.CopyFrom(_struct(dict(entry.conversation.context)))
        if entry.end_user is not None:
            out.traits.CopyFrom(_struct(dict(entry.end_user.traits)))
    return out


def activity_pb(activity: Activity) -> operator_pb2.Activity:
    return operator_pb2.Activity(
        id=activity.id, conversation_id=activity.conversation_id, kind=activity.kind,
        data=_struct(activity.data), created_at=_ts(activity.created_at),
    )


async def _abort(context: Context, exc: SwitchboardError) -> None:
    await context.abort_with_status(to_status(exc))


class OperatorServicer(operator_pb2_grpc.OperatorServiceServicer):
    def __init__(self, handoffs: Handoffs) -> None:
        self.handoffs = handoffs

    async def ListHandoffs(self, request: operator_pb2.ListHandoffsRequest,
                           context: Context) -> operator_pb2.ListHandoffsResponse:
        try:
            states = [STATE_OF_PB.get(s, "unspecified") for s in request.states]
            entries = await self.handoffs.queue(current_principal(), states,
                                                request.operator_name)
        except SwitchboardError as exc:
            await _abort(context, exc)
            raise
        return operator_pb2.ListHandoffsResponse(
            handoffs=[handoff_pb(e.handoff, e) for e in entries])

    async def GetHandoff(self, request: operator_pb2.GetHandoffRequest,
                         context: Context) -> operator_pb2.GetHandoffResponse:
        try:
            entry, messages = await self.handoffs.get(
                current_principal(), request.conversation_id, request.operator_name)
        except SwitchboardError as exc:
            await _abort(context, exc)
            raise
        return operator_pb2.GetHandoffResponse(
            handoff=handoff_pb(entry.handoff, entry),
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
            await _abort(context, exc)
            return
        try:
            yield operator_pb2.WatchHandoffsResponse()  # admitted: the stream is following
            async for activity in activities:
                yield operator_pb2.WatchHandoffsResponse(activity=activity_pb(activity))
        finally:
            activities.close()

    async def RequestHandoff(self, request: operator_pb2.RequestHandoffRequest,
                             context: Context) -> operator_pb2.RequestHandoffResponse:
        try:
            record = await self.handoffs.request(
                current_principal(), request.conversation_id, request.team, request.reason,
                request.operator_name)
        except SwitchboardError as exc:
            await _abort(context, exc)
            raise
        return operator_pb2.RequestHandoffResponse(handoff=handoff_pb(record))

    async def ClaimHandoff(self, request: operator_pb2.ClaimHandoffRequest,
                           context: Context) -> operator_pb2.ClaimHandoffResponse:
        try:
            record = await self.handoffs.claim(current_principal(), request.conversation_id,
                                               request.operator_name)
        except SwitchboardError as exc:
            await _abort(context, exc)
            raise
        return operator_pb2.ClaimHandoffResponse(handoff=handoff_pb(record))

    async def SendOperatorMessage(
        self, request: operator_pb2.SendOperatorMessageRequest, context: Context
    ) -> operator_pb2.SendOperatorMessageResponse:
        try:
            message, activity = await self.handoffs.send(
                current_principal(), request.conversation_id, request.text,
                request.operator_name)
        except SwitchboardError as exc:
            await _abort(context, exc)
            raise
        return operator_pb2.SendOperatorMessageResponse(
            message=convert.message_pb(message), activity_id=activity.id)

    async def ReleaseHandoff(self, request: operator_pb2.ReleaseHandoffRequest,
                             context: Context) -> operator_pb2.ReleaseHandoffResponse:
        try:
            record = await self.handoffs.release(current_principal(), request.conversation_id,
                                                 request.operator_name)
        except SwitchboardError as exc:
            await _abort(context, exc)
            raise
        return operator_pb2.ReleaseHandoffResponse(handoff=handoff_pb(record))

    async def CloseHandoff(self, request: operator_pb2.CloseHandoffRequest,
                           context: Context) -> operator_pb2.CloseHandoffResponse:
        try:
            record = await self.handoffs.close(current_principal(), request.conversation_id,
                                               request.operator_name)
        except SwitchboardError as exc:
            await _abort(context, exc)
            raise
        return operator_pb2.CloseHandoffResponse(handoff=handoff_pb(record))


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
            await _abort(context, exc)
            return
        try:
            yield operator_pb2.ListenConversationResponse()  # admitted: following from now
            async for activity in activities:
                yield operator_pb2.ListenConversationResponse(activity=activity_pb(activity))
        finally:
            activities.close()


def register_operator_service(core: CoreParts, server: grpc.aio.Server) -> str:
    """Core registrar: OperatorService and ListenService on the engine's handoffs."""
    handoffs = core.engine.handoffs
    operator_pb2_grpc.add_OperatorServiceServicer_to_server(OperatorServicer(handoffs), server)
    operator_pb2_grpc.add_ListenServiceServicer_to_server(ListenServicer(handoffs), server)
    return OPERATOR_SERVICE
