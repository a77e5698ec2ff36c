"""The events an organisation's webhook endpoints can subscribe to, and their bodies.

A body is `{"id", "type", "created", "org_id", "data": {...}}`: `id` is the event's own
id (`evt_...`, the same on every retry, so a receiver can drop duplicates), `created` the
Unix time the change happened. Conversation ids are the canonical UUID (every dialect
accepts it). The body is built once, stored with the event, and sent byte for byte on
every attempt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from core.clock import IdSource
from core.domain import ConversationRecord, MessageRecord
from core.events import Completed, EventBody, InterruptEvent, StreamError

CONVERSATION_CREATED: Final = "conversation.created"
MESSAGE_CREATED: Final = "message.created"
TURN_COMPLETED: Final = "turn.completed"
HANDOFF_REQUESTED: Final = "handoff.requested"
HANDOFF_CLAIMED: Final = "handoff.claimed"
HANDOFF_RELEASED: Final = "handoff.released"
CONVERSATION_CLOSED: Final = "conversation.closed"

EVENT_TYPES: Final = (
    CONVERSATION_CREATED, MESSAGE_CREATED, TURN_COMPLETED, HANDOFF_REQUESTED,
    HANDOFF_CLAIMED, HANDOFF_RELEASED, CONVERSATION_CLOSED,
)
# The type `switchboard webhooks test` sends; never stored, never subscribed to.
TEST_EVENT: Final = "webhook.test"
EVENT_ID_PREFIX: Final = "evt_"


def new_event_id(ids: IdSource) -> str:
    return EVENT_ID_PREFIX + ids.uuid().replace("-", "")


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One change to tell subscribed endpoints about. `conversation_id` orders delivery:
    an endpoint gets a conversation's events in the order they were written."""

    id: str
    org_id: str
    type: str
    conversation_id: str
    created_at: datetime
    data: dict[str, Any] = field(default_factory=dict)

    def body(self) -> str:
        """The JSON body every attempt sends (one spelling: compact, keys in order)."""
        return json.dumps({
            "id": self.id, "type": self.type, "created": int(self.created_at.timestamp()),
            "org_id": self.org_id, "data": self.data,
        }, separators=(",", ":"), ensure_ascii=False)


def _when(moment: datetime) -> int:
    return int(moment.timestamp())


def conversation_created(ids: IdSource, c: ConversationRecord) -> OutboxEvent:
    return OutboxEvent(new_event_id(ids), c.org_id, CONVERSATION_CREATED, c.id, c.created_at, {
        "conversation": {"id": c.id, "agent_id": c.agent_id, "user_id": c.user_id,
                         "created": _when(c.created_at)},
    })


def message_created(ids: IdSource, m: MessageRecord) -> OutboxEvent:
    message: dict[str, Any] = {
        "id": m.id, "conversation_id": m.conversation_id, "turn_id": m.turn_id,
        "role": m.role, "content": m.content, "status": m.status,
        "created": _when(m.created_at),
    }
    if m.agent_id:
        message["agent_id"] = m.agent_id
    # Operator messages (human handoff) name who wrote them.
    operator = m.metadata.get("operator_name") or m.metadata.get("operator")
    if operator:
        message["operator"] = operator
    return OutboxEvent(new_event_id(ids), m.org_id, MESSAGE_CREATED, m.conversation_id,
                       m.created_at, {"message": message})


def turn_completed(ids: IdSource, org_id: str, conversation_id: str, turn_id: str,
                   status: str, terminal: EventBody, at: datetime) -> OutboxEvent:
    """A turn (or one segment of it, up to an interrupt) was stored, however it ended."""
    turn: dict[str, Any] = {"id": turn_id, "conversation_id": conversation_id,
                            "status": status}
    if isinstance(terminal, Completed):
        turn.update({
            "agent_id": terminal.agent_id, "message_id": terminal.message_id,
            "text": terminal.text, "confidence": terminal.confidence,
            "model": terminal.model,
            "usage": {"prompt_tokens": terminal.usage.prompt_tokens,
                      "completion_tokens": terminal.usage.completion_tokens,
                      "cost_micros": terminal.usage.cost_micros},
        })
        if terminal.routing is not None:
            turn["routing"] = {"action": terminal.routing.action,
                               "team": terminal.routing.team,
                               "ticket_id": terminal.routing.ticket_id}
    elif isinstance(terminal, InterruptEvent):
        turn["interrupt_id"] = terminal.interrupt_id
    elif isinstance(terminal, StreamError):
        turn["error"] = {"code": terminal.code, "reason": terminal.reason,
                         "message": terminal.message}
    return OutboxEvent(new_event_id(ids), org_id, TURN_COMPLETED, conversation_id, at,
                       {"turn": turn})


def _handoff(ids: IdSource, kind: str, org_id: str, conversation_id: str, at: datetime,
             details: dict[str, Any]) -> OutboxEvent:
    return OutboxEvent(new_event_id(ids), org_id, kind, conversation_id, at,
                       {"conversation_id": conversation_id, **details})


def handoff_requested(ids: IdSource, org_id: str, conversation_id: str, at: datetime, *,
                      reason: str = "", team: str = "") -> OutboxEvent:
    """The conversation went `bot` → `waiting` (`reason`: livehelp, routing_rule,
    flow_handoff, api, or a rule's or caller's own)."""
    return _handoff(ids, HANDOFF_REQUESTED, org_id, conversation_id, at,
                    {"state": "waiting", "reason": reason, "team": team})


def handoff_claimed(ids: IdSource, org_id: str, conversation_id: str, at: datetime, *,
                    operator: str) -> OutboxEvent:
    return _handoff(ids, HANDOFF_CLAIMED, org_id, conversation_id, at,
                    {"state": "human", "operator": operator})


def handoff_released(ids: IdSource, org_id: str, conversation_id: str, at: datetime, *,
                     operator: str = "") -> OutboxEvent:
    return _handoff(ids, HANDOFF_RELEASED, org_id, conversation_id, at,
                    {"state": "bot", "operator": operator})


def conversation_closed(ids: IdSource, org_id: str, conversation_id: str, at: datetime, *,
                        operator: str = "") -> OutboxEvent:
    return _handoff(ids, CONVERSATION_CLOSED, org_id, conversation_id, at,
                    {"state": "closed", "operator": operator})


def ping_event(ids: IdSource, org_id: str, at: datetime) -> OutboxEvent:
    return OutboxEvent(new_event_id(ids), org_id, TEST_EVENT, "", at,
                       {"message": "A test event from `switchboard webhooks test`."})
