"""Human handoff: the records of a conversation's handoff state and its activity log.

A conversation is in one handoff state at a time:

    bot ──request──▶ waiting ──claim──▶ human ──release──▶ bot
                        │                 │
                        └──────close──────┴──▶ closed ──request──▶ waiting

- `bot`: the agent answers (a conversation without a handoff row is `bot`).
- `waiting`: a handoff was requested (`mode: livehelp`, a routing rule to a team, or the
  operator API); it sits in the queue. Visitor messages are stored and reach operators;
  no model is called.
- `human`: an operator claimed it; only that operator (or a secret key) replies,
  releases or closes it. Still no model call.
- `closed`: the handoff is over; the agent answers later messages again, and a new
  request puts it back in the queue.

Every transition is one store method, one transaction: a conditional update of the
handoff row (so two operators claiming at once: exactly one wins) plus one row of the
conversation's activity log. The activity log is what operators and visitors follow
(`GET /api/operator/v1/events`, `GET /api/sdk/chat/listen`): its ids are the durable
resume cursors (`Last-Event-ID`), increasing in commit order within an organisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.domain import MessageRecord
from core.errors import Code, Reason, SwitchboardError


class HandoffState:
    BOT = "bot"
    WAITING = "waiting"
    HUMAN = "human"
    CLOSED = "closed"

    ALL = (BOT, WAITING, HUMAN, CLOSED)
    HELD = (WAITING, HUMAN)  # the bot is quiet


class ActivityKind:
    STATE = "state"  # a transition: data {state, previous, team, ticket_id, operator...}
    MESSAGE = "message"  # a transcript message: data {message_id, role, text, ...}


@dataclass(frozen=True, slots=True)
class Operator:
    """Who acts on a handoff: an operator token's id and name, or a secret key (`admin`:
    trusted server-side code, may act on a conversation another operator claimed)."""

    id: str
    name: str
    admin: bool = False


@dataclass(frozen=True, slots=True)
class HandoffRecord:
    conversation_id: str
    org_id: str
    state: str
    updated_at: datetime
    team: str = ""
    ticket_id: str = ""
    reason: str = ""
    operator_id: str = ""
    operator_name: str = ""
    requested_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class HandoffRequest:
    """bot/closed → waiting: what `Store.request_handoff` writes (with a ticket)."""

    org_id: str
    conversation_id: str
    team: str
    ticket_id: str
    subject: str
    reason: str
    now: datetime


@dataclass(frozen=True, slots=True)
class ActivityDraft:
    """An activity row to write inside another write's transaction (a turn's begin or
    commit); the store gives it its id."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Activity:
    id: int
    org_id: str
    conversation_id: str
    kind: str
    data: dict[str, Any]
    created_at: datetime


def not_waiting(conversation_id: str, state: str, wanted: str) -> SwitchboardError:
    """A transition that the conversation's state does not allow (FAILED_PRECONDITION)."""
    return SwitchboardError(
        Code.FAILED_PRECONDITION, Reason.HANDOFF_STATE,
        f"Conversation '{conversation_id}' is {state}; this needs it {wanted}.",
        {"state": state},
    )


def claimed_by_other(conversation_id: str, name: str) -> SwitchboardError:
    """Another operator holds the conversation (ABORTED: a lost race or a stale view)."""
    return SwitchboardError(
        Code.ABORTED, Reason.HANDOFF_CLAIMED,
        f"Conversation '{conversation_id}' was claimed by {name or 'another operator'}.",
        {"state": HandoffState.HUMAN},
    )


def check_transition(record: HandoffRecord | None, conversation_id: str,
                     allowed: tuple[str, ...], operator: Operator | None = None) -> str:
    """The conversation's current state if a transition from `allowed` may happen now, by
    `operator` (a conversation an operator claimed is theirs alone, unless `admin`);
    else the error. Backends call it on the row they locked, then update conditionally."""
    state = record.state if record is not None else HandoffState.BOT
    if state not in allowed:
        raise refusal(record, conversation_id, allowed)
    if (record is not None and state == HandoffState.HUMAN and operator is not None
            and not operator.admin and record.operator_id != operator.id):
        raise claimed_by_other(conversation_id, record.operator_name)
    return state


def state_data(record: HandoffRecord, previous: str) -> dict[str, Any]:
    """The activity row of a transition: what operators and the visitor are told."""
    return {
        "state": record.state, "previous": previous, "team": record.team,
        "ticket_id": record.ticket_id, "reason": record.reason,
        "operator": {"id": record.operator_id, "name": record.operator_name},
    }


def refusal(record: HandoffRecord | None, conversation_id: str, allowed: tuple[str, ...],
            operator: Operator | None = None) -> SwitchboardError:
    """Why a conditional transition matched no row: the one place that names the error a
    backend raises after its update found nothing to change."""
    state = record.state if record is not None else HandoffState.BOT
    if state == HandoffState.HUMAN and record is not None and (
        HandoffState.HUMAN not in allowed
        or (operator is not None and not operator.admin and record.operator_id != operator.id)
    ):
        return claimed_by_other(conversation_id, record.operator_name)
    return not_waiting(conversation_id, state, " or ".join(allowed))


def message_data(message: MessageRecord, held: bool,
                 operator: Operator | None = None) -> dict[str, Any]:
    """The activity row of a transcript message. `held`: written while a person has the
    conversation (operators follow those; visitors follow every message)."""
    data: dict[str, Any] = {
        "message_id": message.id, "role": message.role, "text": message.content,
        "created_at": message.created_at.isoformat(), "held": held,
    }
    if operator is not None:
        data["operator"] = {"id": operator.id, "name": operator.name}
    return data
