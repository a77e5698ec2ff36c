"""switchboard.v1.FlowService: thin translation between proto and the flow engine (the one
place that knows both sides of the flow surface), and its registrar for CoreServer."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeAlias

import grpc
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from core.domain import ReportedUsage
from core.engine.admission import Access
from core.errors import SwitchboardError
from core.events import Usage
from core.flows.engine import FlowEngine
from core.flows.messages import FlowMessage, FlowReply, Intent
from core.flows.runner import Block
from core.flows.store import ExecutionRecord, ExecutionStatus
from core.grpcapi.auth import current_principal
from core.grpcapi.errors import abort
from core.grpcapi.services import CoreParts
from switchboard.v1 import events_pb2, flow_pb2, flow_pb2_grpc

Context: TypeAlias = Any  # grpc.aio.ServicerContext (untyped in grpc stubs)

FLOW_SERVICE = flow_pb2.DESCRIPTOR.services_by_name["FlowService"].full_name

_STATUS = {
    ExecutionStatus.RUNNING: flow_pb2.EXECUTION_STATUS_RUNNING,
    ExecutionStatus.WAITING: flow_pb2.EXECUTION_STATUS_WAITING,
    ExecutionStatus.COMPLETED: flow_pb2.EXECUTION_STATUS_COMPLETED,
    ExecutionStatus.HANDED_OFF: flow_pb2.EXECUTION_STATUS_HANDED_OFF,
    ExecutionStatus.FAILED: flow_pb2.EXECUTION_STATUS_FAILED,
}


def _struct(data: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(data)
    return s


def _ts(dt: datetime) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromDatetime(dt)
    return t


def _intent_pb(i: Intent) -> flow_pb2.Intent:
    return flow_pb2.Intent(name=i.name, description=i.description)


def flow_message(msg: flow_pb2.SendMessageRequest) -> FlowMessage:
    usage = None
    if msg.HasField("token_usage"):
        u = msg.token_usage
        usage = ReportedUsage(u.prompt_tokens, u.completion_tokens, u.total_tokens, u.model)
    return FlowMessage(
        text=msg.text,
        intent_name=msg.intent_name,
        context=json_format.MessageToDict(msg.context),
        variables=json_format.MessageToDict(msg.variables),
        usage=usage,
        wait_token=msg.wait_token,
        input=json_format.MessageToDict(msg.input) if msg.HasField("input") else None,
        has_input=msg.HasField("input"),
        idempotency_key=msg.idempotency_key,
    )


def usage_pb(u: Usage) -> events_pb2.Usage:
    return events_pb2.Usage(
        prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens,
        total_tokens=u.total_tokens, model=u.model, cost_micros=u.cost_micros,
    )


def block_pb(b: Block) -> flow_pb2.Block:
    return flow_pb2.Block(type=b.type, id=b.id, payload=_struct(b.payload),
                          meta=_struct(b.meta))


def reply_pb(r: FlowReply) -> flow_pb2.FlowReply:
    out = flow_pb2.FlowReply(
        execution_id=r.execution_id, conversation_id=r.conversation_id,
        blocks=[block_pb(b) for b in r.blocks], wait_token=r.wait_token,
        token_usage=usage_pb(r.usage), status=_STATUS[r.status],
    )
    if r.expected_input is not None:
        out.expected_input.CopyFrom(_struct(r.expected_input))
    if r.wait_expires_at is not None:
        out.wait_expires_at.CopyFrom(_ts(r.wait_expires_at))
    return out


def execution_pb(e: ExecutionRecord) -> flow_pb2.Execution:
    out = flow_pb2.Execution(
        id=e.id, conversation_id=e.conversation_id, agent_id=e.agent_id,
        intent_name=e.intent, status=_STATUS[e.status], current_step=e.current_step,
        steps_run=e.steps_run, created_at=_ts(e.created_at), updated_at=_ts(e.updated_at),
    )
    if e.expected_input is not None and e.status == ExecutionStatus.WAITING:
        out.expected_input.CopyFrom(_struct(e.expected_input))
    if e.wait_expires_at is not None and e.status == ExecutionStatus.WAITING:
        out.wait_expires_at.CopyFrom(_ts(e.wait_expires_at))
    return out


class FlowServicer(flow_pb2_grpc.FlowServiceServicer):
    def __init__(self, engine: FlowEngine) -> None:
        self.engine = engine

    async def CreateSession(self, request: flow_pb2.CreateSessionRequest,
                            context: Context) -> flow_pb2.CreateSessionResponse:
        try:
            info = await self.engine.create_session(
                current_principal(), request.agent, request.conversation_id, request.origin,
                Access(request.origin, "", request.user_id, request.user_token))
        except SwitchboardError as exc:
            await abort(context, exc)
            raise
        return flow_pb2.CreateSessionResponse(
            token=info.token, expires_at=_ts(info.expires_at),
            conversation_id=info.conversation_id, agent_id=info.agent_id,
            intents=[_intent_pb(i) for i in info.intents],
        )

    async def ListIntents(self, request: flow_pb2.ListIntentsRequest,
                          context: Context) -> flow_pb2.ListIntentsResponse:
        try:
            intents = await self.engine.list_intents(current_principal())
        except SwitchboardError as exc:
            await abort(context, exc)
            raise
        return flow_pb2.ListIntentsResponse(intents=[_intent_pb(i) for i in intents])

    async def SendMessage(self, request: flow_pb2.SendMessageRequest,
                          context: Context) -> flow_pb2.SendMessageResponse:
        try:
            reply = await self.engine.send_message(current_principal(), flow_message(request),
                                                   request.origin)
        except SwitchboardError as exc:
            await abort(context, exc)
            raise
        return flow_pb2.SendMessageResponse(reply=reply_pb(reply))

    async def GetExecution(self, request: flow_pb2.GetExecutionRequest,
                           context: Context) -> flow_pb2.GetExecutionResponse:
        try:
            execution = await self.engine.get_execution(current_principal(),
                                                        request.execution_id)
        except SwitchboardError as exc:
            await abort(context, exc)
            raise
        return flow_pb2.GetExecutionResponse(execution=execution_pb(execution))


def register_flow_service(core: CoreParts, server: grpc.aio.Server) -> str:
    """Core registrar: FlowService on the core's store, clock, ids and sessions."""
    engine = FlowEngine(core.store, core.clock, core.ids, core.sessions, core.engine)
    flow_pb2_grpc.add_FlowServiceServicer_to_server(FlowServicer(engine), server)
    return FLOW_SERVICE
