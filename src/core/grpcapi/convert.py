"""proto ⇄ domain conversion for the core's servicers (the one place that knows both)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from core import events as ev
from core.domain import (
    ConversationRecord,
    HistoryItem,
    MessageRecord,
    ReportedUsage,
    ResumeRequest,
    ToolOutput,
    TurnRequest,
)
from core.engine.handoff import QueueEntry
from core.engine.turns import TurnFold
from core.errors import Code, Reason, SwitchboardError
from core.handoffs import Activity, HandoffRecord, HandoffState
from core.providers.base import ContextEntry, ToolSpec
from switchboard.v1 import chat_pb2, events_pb2, operator_pb2

_STATUS = {
    ev.TurnStatus.RUNNING: events_pb2.TURN_STATUS_RUNNING,
    ev.TurnStatus.COMPLETED: events_pb2.TURN_STATUS_COMPLETED,
    ev.TurnStatus.INTERRUPTED: events_pb2.TURN_STATUS_INTERRUPTED,
    ev.TurnStatus.CANCELLED: events_pb2.TURN_STATUS_CANCELLED,
    ev.TurnStatus.STOPPED: events_pb2.TURN_STATUS_STOPPED,
    ev.TurnStatus.FAILED: events_pb2.TURN_STATUS_FAILED,
    ev.TurnStatus.ROUTED: events_pb2.TURN_STATUS_ROUTED,
}


def _struct(data: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(data)
    return s


def _dict(s: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(s)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def _set_ts(target: timestamp_pb2.Timestamp, dt: datetime) -> None:
    """`target.FromDatetime(dt)` (naive means UTC) in integer arithmetic: it runs for
    every streamed event, and FromDatetime goes through a time tuple, about 2.5x dearer."""
    d = dt - (_NAIVE_EPOCH if dt.tzinfo is None else _EPOCH)
    target.seconds = d.days * 86_400 + d.seconds
    target.nanos = d.microseconds * 1_000


def _ts(dt: datetime) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    _set_ts(t, dt)
    return t


def turn_request(msg: chat_pb2.TurnInput) -> TurnRequest:
    """The domain request; Struct values protobuf accepts but JSON cannot hold (NaN,
    infinities) are INVALID_ARGUMENT."""
    try:
        return _turn_request(msg)
    except (ValueError, json_format.Error) as exc:
        raise SwitchboardError(
            Code.INVALID_ARGUMENT, Reason.INVALID_ARGUMENT,
            "The request holds a value that is not valid JSON (NaN or an infinity).",
        ) from exc


def _turn_request(msg: chat_pb2.TurnInput) -> TurnRequest:
    resume = None
    if msg.HasField("resume"):
        resume = ResumeRequest(
            interrupt_id=msg.resume.interrupt_id,
            results=tuple(
                ToolOutput(r.tool_call_id, r.result_json, r.is_error) for r in msg.resume.results
            ),
        )
    usage = None
    if msg.HasField("reported_usage"):
        u = msg.reported_usage
        usage = ReportedUsage(u.prompt_tokens, u.completion_tokens, u.total_tokens, u.model)
    return TurnRequest(
        message=msg.message,
        user_id=msg.user_id,
        company_id=msg.company_id,
        user_token=msg.user_token,
        conversation_id=msg.conversation_id,
        agent=msg.agent,
        mode=msg.mode,
        images=tuple(msg.images),
        custom_fields=_dict(msg.custom_fields),
        context={
            key: ContextEntry(item.label, item.type, json_format.MessageToDict(item.value)
                              if item.HasField("value") else None)
            for key, item in msg.context.items()
        },
        history=tuple(HistoryItem(h.role, h.content) for h in msg.history),
        behavior_context=msg.behavior_context,
        client_tools=tuple(
            ToolSpec(t.name, t.description, _dict(t.parameters), client_side=True)
            for t in msg.client_tools
        ),
        resume=resume,
        idempotency_key=msg.idempotency_key,
        origin=msg.origin,
        variables=_dict(msg.variables),
        reported_usage=usage,
        intent_name=msg.intent_name,
        dialect=msg.dialect or "grpc",
        metadata=dict(msg.metadata),
    )


def usage_pb(u: ev.Usage) -> events_pb2.Usage:
    return events_pb2.Usage(
        prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens,
        total_tokens=u.total_tokens, model=u.model, cost_micros=u.cost_micros,
    )


def action_pb(a: ev.ActionData) -> events_pb2.Action:
    return events_pb2.Action(type=a.type, payload=_struct(a.payload))


def routing_pb(r: ev.Routing) -> events_pb2.Routed:
    return events_pb2.Routed(action=r.action, ticket_id=r.ticket_id, team=r.team)


def completed_pb(c: ev.Completed) -> events_pb2.Completed:
    out = events_pb2.Completed(
        text=c.text, actions=[action_pb(a) for a in c.actions], confidence=c.confidence,
        usage=usage_pb(c.usage), status=_STATUS[c.status], agent_id=c.agent_id,
        model=c.model, message_id=c.message_id,
    )
    if c.routing is not None:
        out.routing.CopyFrom(routing_pb(c.routing))
    return out


def interrupt_pb(i: ev.InterruptEvent) -> events_pb2.Interrupt:
    return events_pb2.Interrupt(
        interrupt_id=i.interrupt_id, tool_call_ids=list(i.tool_call_ids),
        expires_at=_ts(i.expires_at),
    )


def event_pb(e: ev.Event) -> events_pb2.ChatEvent:
    out = events_pb2.ChatEvent()
    fill_event(out, e)
    return out


def fill_event(out: events_pb2.ChatEvent, e: ev.Event) -> None:
    """Write `e` into `out` (a stream response's own `event` field: no copy per delta)."""
    out.seq = e.seq
    out.conversation_id = e.conversation_id
    out.turn_id = e.turn_id
    _set_ts(out.time, e.time)
    b = e.body
    if isinstance(b, ev.TurnStarted):
        out.turn_started.CopyFrom(events_pb2.TurnStarted(
            conversation_id=b.conversation_id, agent_id=b.agent_id, agent_slug=b.agent_slug,
            turn_id=b.turn_id, resumed=b.resumed, new_conversation=b.new_conversation,
        ))
    elif isinstance(b, ev.TextDelta):
        out.text_delta.text = b.text
    elif isinstance(b, ev.ToolCallStart):
        out.tool_call_start.CopyFrom(events_pb2.ToolCallStart(
            tool_call_id=b.tool_call_id, tool_name=b.tool_name, client_side=b.client_side
        ))
    elif isinstance(b, ev.ToolCallArgs):
        out.tool_call_args.CopyFrom(
            events_pb2.ToolCallArgsDelta(tool_call_id=b.tool_call_id, delta=b.delta)
        )
    elif isinstance(b, ev.ToolCallEnd):
        out.tool_call_end.tool_call_id = b.tool_call_id
    elif isinstance(b, ev.ToolResult):
        out.tool_result.CopyFrom(events_pb2.ToolResult(
            tool_call_id=b.tool_call_id, result_json=b.result_json, is_error=b.is_error
        ))
    elif isinstance(b, ev.ActionEvent):
        out.action.CopyFrom(action_pb(b.action))
    elif isinstance(b, ev.InterruptEvent):
        out.interrupt.CopyFrom(interrupt_pb(b))
    elif isinstance(b, ev.RoutedEvent):
        out.routed.CopyFrom(routing_pb(b.routing))
    elif isinstance(b, ev.UsageEvent):
        out.usage.CopyFrom(usage_pb(b.usage))
    elif isinstance(b, ev.AgentHandoff):
        out.agent_handoff.CopyFrom(events_pb2.AgentHandoff(
            from_agent_id=b.from_agent_id, to_agent_id=b.to_agent_id, reason=b.reason
        ))
    elif isinstance(b, ev.StreamError):
        out.error.CopyFrom(events_pb2.StreamError(code=b.code, reason=b.reason, message=b.message))
    elif isinstance(b, ev.Completed):
        out.completed.CopyFrom(completed_pb(b))


def chat_response(f: TurnFold) -> chat_pb2.ChatResponse:
    out = chat_pb2.ChatResponse(
        conversation_id=f.conversation_id, turn_id=f.turn_id, agent_id=f.agent_id,
        agent_slug=f.agent_slug, last_seq=f.last_seq,
    )
    if f.completed is not None:
        out.completed.CopyFrom(completed_pb(f.completed))
    if f.interrupt is not None:
        out.interrupt.CopyFrom(interrupt_pb(f.interrupt))
        out.pending_tool_calls.extend(
            chat_pb2.PendingToolCall(
                tool_call_id=c.tool_call_id, tool_name=c.tool_name, arguments_json=c.arguments_json
            )
            for c in f.pending_calls
        )
    return out


def conversation_pb(c: ConversationRecord) -> chat_pb2.Conversation:
    return chat_pb2.Conversation(
        id=c.id, agent_id=c.agent_id, user_id=c.user_id, created_at=_ts(c.created_at),
        updated_at=_ts(c.updated_at), last_seq=c.last_seq, message_count=c.message_count,
        status=c.status,
    )


def message_pb(m: MessageRecord) -> chat_pb2.Message:
    return chat_pb2.Message(
        id=m.id, conversation_id=m.conversation_id, role=m.role, content=m.content,
        turn_id=m.turn_id, status=_STATUS.get(m.status, events_pb2.TURN_STATUS_UNSPECIFIED),
        actions=[action_pb(a) for a in m.actions], confidence=m.confidence,
        usage=usage_pb(m.usage), images=list(m.images), created_at=_ts(m.created_at),
        agent_id=m.agent_id,
        operator_name=str(m.metadata.get("operator_name", "")) if m.role == "operator" else "",
    )


# -- human handoff (OperatorService, ListenService) --------------------------------------

STATE_PB = {
    HandoffState.BOT: operator_pb2.HANDOFF_STATE_BOT,
    HandoffState.WAITING: operator_pb2.HANDOFF_STATE_WAITING,
    HandoffState.HUMAN: operator_pb2.HANDOFF_STATE_HUMAN,
    HandoffState.CLOSED: operator_pb2.HANDOFF_STATE_CLOSED,
}
STATE_OF_PB = {v: k for k, v in STATE_PB.items()}


def _maybe_ts(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    return _ts(moment) if moment is not None else None


def handoff_pb(record: HandoffRecord, entry: QueueEntry | None = None) -> operator_pb2.Handoff:
    out = operator_pb2.Handoff(
        conversation_id=record.conversation_id, state=STATE_PB[record.state],
        team=record.team, ticket_id=record.ticket_id, reason=record.reason,
        operator_id=record.operator_id, operator_name=record.operator_name,
        updated_at=_ts(record.updated_at), requested_at=_maybe_ts(record.requested_at),
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
