"""The operator side of human handoff, and the activity streams (see core.handoffs for the
states).

Operators authenticate with a secret key or an operator token (`switchboard operators
token create`, a key of kind `operator`): `admit_operator` is the one check of every
operator call. An operator token acts as its own name; a secret key is trusted
server-side code and acts under the name the call gives (default "Operator"), and may
act on a conversation another operator claimed.

Visitors follow their own conversation (`listen`), admitted exactly like every other
conversation route (`admission.admit_conversation`). Operators follow their
organisation (`watch`): handoff state changes and the messages written while a person
has the conversation. Both read the store's activity log after their cursor, then wait
on the bus (core.activity_bus) and read again: replay and live are one loop.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from core import limits
from core.activity_bus import ActivityBus, LocalBus
from core.clock import Clock, IdSource
from core.domain import ConversationRecord, KeyKind, MessageRecord, Principal
from core.engine import admission, router
from core.engine.admission import Access
from core.errors import Code, Reason, SwitchboardError, invalid
from core.events import Routing
from core.handoffs import (
    Activity,
    ActivityKind,
    HandoffRecord,
    HandoffRequest,
    HandoffState,
    Operator,
)
from core.keys import require_kind
from core.outbox import events as outbox
from core.store.base import EndUser, Store

log = logging.getLogger("switchboard.handoff")

DEFAULT_OPERATOR_NAME = "Operator"
DEFAULT_TEAM = router.DEFAULT_TEAM
# What the visitor is told while waiting for a person (no model runs); once an operator
# has the conversation the reply is empty: the operator answers on the listen stream.
WAITING_ACK = ("Thanks, your message is with our {team} team. "
               "Someone will be with you shortly.")


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """A handed-off conversation as an operator sees it in the queue."""

    handoff: HandoffRecord
    conversation: ConversationRecord
    end_user: EndUser | None


class Following:
    """An admitted follower's activity stream. `close()` (idempotent) gives back what
    admitting it reserved, whether or not the stream was ever read."""

    def __init__(self, activities: AsyncIterator[Activity],
                 release: Callable[[], None] = lambda: None) -> None:
        self._activities = activities
        self._release = release
        self._closed = False

    def __aiter__(self) -> AsyncIterator[Activity]:
        return self._activities

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._release()


def _ticket_id(ids: IdSource) -> str:
    return "tkt_" + ids.uuid().replace("-", "")[:12]


class Handoffs:
    def __init__(self, store: Store, clock: Clock, ids: IdSource,
                 bus: ActivityBus | None = None) -> None:
        self.store = store
        self.clock = clock
        self.ids = ids
        self.bus: ActivityBus = bus or LocalBus()
        # The webhook dispatcher's wake-up after a transition wrote events (it also polls).
        self.outbox_written: Callable[[], None] = lambda: None
        self._listeners: dict[str, int] = {}  # open listen streams per conversation

    # -- the turn side ------------------------------------------------------------------

    async def held(self, org_id: str, conversation_id: str) -> HandoffRecord | None:
        """The conversation's handoff while a person has it (waiting or human), else None."""
        record = await self.store.get_handoff(org_id, conversation_id)
        return record if record is not None and record.state in HandoffState.HELD else None

    async def request_from_turn(self, org_id: str, conversation_id: str, team: str,
                                action: str, subject: str, reason: str) -> Routing:
        """A routed turn (a rule to a team, or `mode: livehelp`): bot -> waiting, with its
        ticket, in one transaction."""
        now = self.clock.now()
        record, _ = await self.store.request_handoff(HandoffRequest(
            org_id, conversation_id, team, _ticket_id(self.ids), subject, reason, now),
            (outbox.handoff_requested(self.ids, org_id, conversation_id, now, reason=reason,
                                      team=team),))
        await self.published(org_id)
        return Routing(action=action, ticket_id=record.ticket_id, team=record.team)

    async def published(self, org_id: str) -> None:
        """After a write of activity (and webhook events): wake the followers and the
        webhook dispatcher."""
        self.outbox_written()
        await self.bus.publish(org_id)

    # -- operators ----------------------------------------------------------------------

    async def admit_operator(self, principal: Principal, name: str = "",
                             origin: str = "") -> Operator:
        """Who acts: an operator token (its own name), or a secret key (the given name)."""
        require_kind(principal, KeyKind.SECRET, KeyKind.OPERATOR)
        org = await self.store.get_org(principal.org_id)
        if org is None:
            raise SwitchboardError(Code.UNAUTHENTICATED, Reason.UNAUTHENTICATED, "Unknown key.")
        if len(name) > limits.MAX_OPERATOR_NAME_CHARS:
            raise SwitchboardError(
                Code.INVALID_ARGUMENT, Reason.FIELD_TOO_LONG,
                f"operator_name must be at most {limits.MAX_OPERATOR_NAME_CHARS} characters.",
                {"field": "operator_name"})
        if principal.key_kind == KeyKind.OPERATOR:
            return Operator(principal.key_id, principal.key_name or DEFAULT_OPERATOR_NAME)
        name = " ".join(name.split()) or DEFAULT_OPERATOR_NAME
        return Operator("secret:" + name, name, admin=True)

    async def _conversation(self, principal: Principal,
                            conversation_id: str) -> ConversationRecord:
        return await admission.find_conversation(self.store, principal, conversation_id)

    async def _entry(self, record: HandoffRecord,
                     conversation: ConversationRecord | None = None) -> QueueEntry | None:
        if conversation is None:
            conversation = await self.store.get_conversation(record.org_id,
                                                             record.conversation_id)
            if conversation is None:
                return None
        end_user = None
        if conversation.user_id and conversation.user_id != "anonymous":
            end_user = await self.store.get_end_user(record.org_id, conversation.user_id)
        return QueueEntry(record, conversation, end_user)

    async def queue(self, principal: Principal, states: Sequence[str],
                    name: str = "") -> list[QueueEntry]:
        await self.admit_operator(principal, name)
        for state in states:
            if state not in HandoffState.ALL:
                raise invalid(Reason.INVALID_ARGUMENT,
                              f"state must be one of {', '.join(HandoffState.ALL)}.",
                              field="state")
        records = await self.store.list_handoffs(principal.org_id,
                                                 tuple(states) or HandoffState.HELD)
        entries = [await self._entry(r) for r in records]
        return [e for e in entries if e is not None]

    async def get(self, principal: Principal, conversation_id: str,
                  name: str = "") -> tuple[QueueEntry, list[MessageRecord]]:
        """A conversation with its handoff state, visitor and transcript (any state)."""
        await self.admit_operator(principal, name)
        conversation = await self._conversation(principal, conversation_id)
        record = await self.store.get_handoff(principal.org_id, conversation.id) or (
            HandoffRecord(conversation.id, conversation.org_id, HandoffState.BOT,
                          conversation.updated_at))
        entry = await self._entry(record, conversation)
        assert entry is not None
        messages, _ = await self.store.list_messages(principal.org_id, conversation.id,
                                                     limits.LIST_MESSAGES_MAX_PAGE)
        return entry, messages

    async def request(self, principal: Principal, conversation_id: str, team: str = "",
                      reason: str = "", name: str = "") -> HandoffRecord:
        await self.admit_operator(principal, name)
        for field, value in (("team", team), ("reason", reason)):
            if len(value) > limits.MAX_REFERENCE_CHARS:
                raise invalid(Reason.FIELD_TOO_LONG,
                              f"{field} must be at most {limits.MAX_REFERENCE_CHARS} "
                              "characters.", field=field)
        conversation = await self._conversation(principal, conversation_id)
        team = team.strip() or DEFAULT_TEAM
        now = self.clock.now()
        record, _ = await self.store.request_handoff(HandoffRequest(
            principal.org_id, conversation.id, team, _ticket_id(self.ids),
            f"Handoff requested to {team}", reason or "api", now),
            (outbox.handoff_requested(self.ids, principal.org_id, conversation.id, now,
                                      reason=reason or "api", team=team),))
        await self.published(principal.org_id)
        return record

    async def _transition(self, principal: Principal, conversation_id: str, name: str,
                          act: Callable[..., Any], event: Callable[..., outbox.OutboxEvent]
                          ) -> HandoffRecord:
        operator = await self.admit_operator(principal, name)
        conversation = await self._conversation(principal, conversation_id)
        now = self.clock.now()
        record, _ = await act(principal.org_id, conversation.id, operator, now, (
            event(self.ids, principal.org_id, conversation.id, now, operator=operator.name),))
        await self.published(principal.org_id)
        assert isinstance(record, HandoffRecord)
        return record

    async def claim(self, principal: Principal, conversation_id: str,
                    name: str = "") -> HandoffRecord:
        return await self._transition(principal, conversation_id, name,
                                      self.store.claim_handoff, outbox.handoff_claimed)

    async def release(self, principal: Principal, conversation_id: str,
                      name: str = "") -> HandoffRecord:
        return await self._transition(principal, conversation_id, name,
                                      self.store.release_handoff, outbox.handoff_released)

    async def close(self, principal: Principal, conversation_id: str,
                    name: str = "") -> HandoffRecord:
        return await self._transition(principal, conversation_id, name,
                                      self.store.close_handoff, outbox.conversation_closed)

    async def send(self, principal: Principal, conversation_id: str, text: str,
                   name: str = "") -> tuple[MessageRecord, Activity]:
        """An operator's message: in the transcript (`role: operator`) and on the visitor's
        listen stream."""
        operator = await self.admit_operator(principal, name)
        if not text.strip():
            raise SwitchboardError(Code.INVALID_ARGUMENT, Reason.MESSAGE_REQUIRED,
                                   "text is required.", {"field": "text"})
        if len(text) > limits.MAX_OPERATOR_MESSAGE_CHARS:
            raise SwitchboardError(
                Code.INVALID_ARGUMENT, Reason.MESSAGE_TOO_LONG,
                f"text must be at most {limits.MAX_OPERATOR_MESSAGE_CHARS:,} characters.",
                {"field": "text", "limit": str(limits.MAX_OPERATOR_MESSAGE_CHARS)})
        conversation = await self._conversation(principal, conversation_id)
        now = self.clock.now()
        message = MessageRecord(
            id=self.ids.uuid(), conversation_id=conversation.id, org_id=principal.org_id,
            turn_id="", role="operator", content=text, status="completed", created_at=now,
            metadata={"operator_id": operator.id, "operator_name": operator.name},
        )
        activity = await self.store.add_operator_message(
            message, operator, now, (outbox.message_created(self.ids, message),))
        await self.published(principal.org_id)
        return message, activity

    # -- following ----------------------------------------------------------------------

    async def _follow(self, org_id: str, after: int, conversation_id: str,
                      keep: Callable[[Activity], bool]) -> AsyncIterator[Activity]:
        # Subscribed before each read: a change committed after the read wakes this loop.
        async with self.bus.subscribe(org_id) as waiter:
            while True:
                batch = await self.store.list_activity(org_id, after, conversation_id)
                for activity in batch:
                    after = activity.id
                    if keep(activity):
                        yield activity
                if len(batch) < limits.ACTIVITY_PAGE:
                    await waiter.wait()

    async def _cursor(self, org_id: str, after: int | None) -> int:
        """Where a follower starts: after its cursor, else after everything so far (read
        before the call is acknowledged, so nothing the caller does next is missed)."""
        return after if after is not None else await self.store.last_activity_id(org_id)

    async def watch(self, principal: Principal, after: int | None,
                    name: str = "") -> Following:
        """Admit an operator and return the organisation's handoff activity: every state
        change, and the messages written while a person has the conversation."""
        await self.admit_operator(principal, name)
        start = await self._cursor(principal.org_id, after)
        return Following(self._follow(principal.org_id, start, "", for_operators))

    async def listen(self, principal: Principal, conversation_id: str, access: Access,
                     after: int | None) -> Following:
        """Admit the visitor and return one conversation's activity: operator messages,
        state changes and the bot's replies. At most MAX_LISTENERS_PER_CONVERSATION open
        at once per process (RESOURCE_EXHAUSTED `concurrency_limited` beyond)."""
        conversation = await admission.admit_conversation(
            self.store, principal, conversation_id, access)
        open_now = self._listeners.get(conversation.id, 0)
        if open_now >= limits.MAX_LISTENERS_PER_CONVERSATION:
            raise SwitchboardError(
                Code.RESOURCE_EXHAUSTED, Reason.CONCURRENCY_LIMITED,
                f"At most {limits.MAX_LISTENERS_PER_CONVERSATION} listen streams may be "
                "open for one conversation; close one first.", retry_after_s=1.0)
        self._listeners[conversation.id] = open_now + 1
        try:
            start = await self._cursor(principal.org_id, after)
        except BaseException:
            self._unlisten(conversation.id)
            raise
        return Following(self._follow(principal.org_id, start, conversation.id,
                                      lambda a: True),
                         lambda: self._unlisten(conversation.id))

    def _unlisten(self, conversation_id: str) -> None:
        left = self._listeners.get(conversation_id, 1) - 1
        if left > 0:
            self._listeners[conversation_id] = left
        else:
            self._listeners.pop(conversation_id, None)


def for_operators(activity: Activity) -> bool:
    return activity.kind == ActivityKind.STATE or bool(activity.data.get("held"))
