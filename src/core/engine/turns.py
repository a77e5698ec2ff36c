"""The turn engine: from a `TurnRequest` to a stored reply, as a stream of events.

`start_turn` checks the request, resolves organisation, agent and conversation, and
begins the turn through the turn pipeline (`core.engine.pipeline`: admission, the
store's claim on the conversation, the live registry), then runs it in its own task;
callers follow the returned `LiveTurn`. The task runs the agent loop, and when it ends
(completed, interrupted, stopped, cancelled, failed) the pipeline stores the transcript
and every event in one transaction *before* publishing the terminal event, so a client
that saw `completed` can always read the reply back. Flow messages use the same pipeline
(`core.flows.engine`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from datetime import timedelta
from typing import Any

from core import limits, ratelimit
from core.agents.catalog import AgentCatalog
from core.budgets import Budgets
from core.clock import Clock, IdSource
from core.domain import (
    AgentRecord,
    ConversationRecord,
    InterruptRecord,
    KeyKind,
    MessageRecord,
    Organisation,
    PendingCall,
    Principal,
    TurnRecord,
    TurnRequest,
)
from core.engine import admission, client_tools, intake, router
from core.engine.admission import Access, Caller
from core.engine.handoff import WAITING_ACK, Handoffs
from core.engine.idempotency import Idempotency, scoped_key
from core.engine.identity import resolve_identity
from core.engine.leases import LEASE_S
from core.engine.live import CANCEL_STOP, LiveTurn
from core.engine.loop import LoopInputs, LoopState, run_agent_loop
from core.engine.pipeline import TurnPipeline
from core.engine.recovery import incomplete_after, recover_running
from core.errors import Code, Reason, SwitchboardError, not_found
from core.events import (
    Completed,
    Event,
    EventBody,
    InterruptEvent,
    RoutedEvent,
    Routing,
    StreamError,
    TextDelta,
    ToolCallArgs,
    ToolCallStart,
    ToolResult,
    TurnStarted,
    TurnStatus,
    Usage,
    UsageEvent,
)
from core.handoffs import (
    ActivityDraft,
    ActivityKind,
    HandoffRecord,
    HandoffState,
    message_data,
)
from core.ids import canonical_conversation_id
from core.observability.turns import observe_provider, turn_finished
from core.providers.base import (
    ChatMessage,
    GenerationRequest,
    ModelProvider,
    ProviderError,
    estimate_tokens,
)
from core.providers.registry import build_provider
from core.quota import StorageQuota
from core.ratelimit import RateLimit
from core.store.base import Store, TurnBegin, TurnConflict, UsageEntry
from core.store.failures import StoreUnavailable
from core.tools import ServerTools, ToolContext

STORE_UNAVAILABLE = Reason.STORE_UNAVAILABLE.value

log = logging.getLogger("switchboard.turns")

HISTORY_FOR_MODEL = 40  # prior transcript messages handed to the model
_ROLE_ALIASES = {
    "user": "user", "customer": "user", "visitor": "user", "human": "user",
    "assistant": "assistant", "agent": "assistant", "bot": "assistant", "ai": "assistant",
}

Pricer = Callable[[str, Usage], Awaitable[Usage]]


async def _no_pricing(org_id: str, usage: Usage) -> Usage:
    return usage


@dataclass(frozen=True, slots=True)
class EngineConfig:
    detach_grace_s: float = limits.DEFAULT_DETACH_GRACE_S
    interrupt_ttl_s: float = limits.DEFAULT_INTERRUPT_TTL_S
    shutdown_grace_s: float = limits.DEFAULT_SHUTDOWN_GRACE_S


@dataclass(frozen=True, slots=True)
class TurnFold:
    """A finished (or paused) turn, as the unary calls return it."""

    conversation_id: str
    turn_id: str
    agent_id: str
    agent_slug: str
    last_seq: int
    completed: Completed | None = None
    interrupt: InterruptEvent | None = None
    pending_calls: tuple[PendingCall, ...] = ()
    error: StreamError | None = None
    events: tuple[Event, ...] = field(default_factory=tuple)


def _hash_default(value: Any) -> Any:
    # Nested dataclasses as the dicts `asdict` made of them, without its deep copy of
    # the whole request (images included): the digest stays the same as before.
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    return str(value)


def request_hash(request: TurnRequest) -> str:
    """A stable digest of what the client asked (idempotency compares these)."""
    data = {f.name: getattr(request, f.name) for f in fields(request)
            if f.name not in ("idempotency_key", "metadata", "ledger_user")}
    raw = json.dumps(data, sort_keys=True, default=_hash_default, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


class TurnEngine:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        ids: IdSource,
        config: EngineConfig | None = None,
        *,
        tools: ServerTools | None = None,
        provider_factory: Callable[[AgentRecord], ModelProvider] | None = None,
        pricer: Pricer | None = None,
        agents: AgentCatalog | None = None,
    ) -> None:
        self.store = store
        self.agents = agents or AgentCatalog(store)
        self.clock = clock
        self.ids = ids
        self.config = config or EngineConfig()
        self.tools = tools or ServerTools()
        self.draining = False
        self._provider_factory = provider_factory or (
            lambda agent: build_provider(agent.definition, agent.id)
        )
        self.price = pricer or _no_pricing
        self.budgets = Budgets(store, clock, lambda org_id, usage: self.price(org_id, usage))
        # The write path chat turns share with flow messages; its live registry and rate
        # limiter are this engine's too.
        self.pipeline = TurnPipeline(store, clock, self.budgets, self.config.detach_grace_s,
                                     ids)
        self.live = self.pipeline.live
        self.failed_commits = self.pipeline.failed_commits
        self.rate_limiter = self.pipeline.rate_limiter
        self.idempotency = Idempotency(store, self.live, clock)
        self.storage = StorageQuota(store, clock)
        # Human handoff: held conversations, operators, the activity streams.
        self.handoffs = Handoffs(store, clock, ids)
        self._tasks: set[asyncio.Task[None]] = set()
        self._background: set[asyncio.Future[Any]] = set()
        # This core's name on the leases of its running turns (core.engine.leases).
        self.replica_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

    # -- resolution ---------------------------------------------------------------------

    async def resolve_agent(
        self, org_id: str, ref: str, conversation: ConversationRecord | None
    ) -> AgentRecord:
        if ref:
            agent = await self.agents.get(org_id, ref)
            if agent is None:
                raise not_found(Reason.AGENT_NOT_FOUND, f"Agent '{ref}' not found.", agent=ref)
            return agent
        if conversation is not None:
            agent = await self.agents.get(org_id, conversation.agent_id)
            if agent is not None:
                return agent
        agent = await self.agents.active(org_id)
        if agent is None:
            raise SwitchboardError(
                Code.FAILED_PRECONDITION, Reason.NO_ACTIVE_AGENT,
                "This organisation has no active agent.",
            )
        return agent

    async def resolve_conversation(
        self, principal: Principal, conversation_id: str
    ) -> ConversationRecord:
        """The conversation an id names, without the owner check (admission does that)."""
        return await admission.find_conversation(self.store, principal, conversation_id)

    async def admit_caller(self, principal: Principal, origin: str = "",
                           dialect: str = "") -> Organisation:
        return await self.pipeline.admit_caller(principal, origin, dialect)

    # -- starting turns -----------------------------------------------------------------

    async def start_turn(self, principal: Principal, request: TurnRequest) -> LiveTurn:
        """Start a turn (or attach to / replay the turn its idempotency key names).

        Starting runs in its own task, shielded from the caller: a client that goes away
        while its turn is being written and registered must not leave half a turn (a
        claimed interrupt with nothing running, a registered turn with no task). If the
        caller is gone, the started turn simply runs with nobody attached and is stored."""
        task = asyncio.ensure_future(self._start_turn(principal, request))
        task.add_done_callback(_retrieve)
        self.track(task)
        return await asyncio.shield(task)

    async def _start_turn(self, principal: Principal, request: TurnRequest) -> LiveTurn:
        if self.draining:
            raise SwitchboardError(
                Code.UNAVAILABLE, Reason.SHUTTING_DOWN, "Server is shutting down; retry shortly."
            )
        mode = intake.validate(request)
        org = await self.admit_caller(principal, request.origin, request.dialect)
        client_tools.validate_client_tools(request.client_tools)
        if not request.idempotency_key:
            return await self._admit_and_start(principal, org, request, mode)
        request = replace(request, idempotency_key=scoped_key(principal, request.idempotency_key))
        # One lock per key: concurrent duplicates wait here, then find the first one's turn
        # (live or stored) instead of starting their own.
        async with self.idempotency.lock(principal.org_id, request.idempotency_key):
            existing = await self.idempotency.find(
                principal.org_id, request.idempotency_key, request_hash(request)
            )
            if existing is not None:
                return existing
            try:
                return await self._admit_and_start(principal, org, request, mode)
            except TurnConflict:
                if self.live.shared is None:
                    raise
                # Another replica claimed the key a moment ago: attach to its turn.
                existing = await self.idempotency.find(
                    principal.org_id, request.idempotency_key, request_hash(request)
                )
                if existing is None:
                    raise
                return existing

    async def _admit_and_start(
        self, principal: Principal, org: Organisation, request: TurnRequest, mode: str
    ) -> LiveTurn:
        """Rate limit and budget, then start: a refusal writes nothing and calls no model."""
        limit = RateLimit.from_settings(org.settings.extra)
        await self.rate_limiter.check_request(principal.key_id, limit)
        caller = admission.caller_of(principal, org, request.user_id, request.user_token)
        visitor = ratelimit.visitor_key(principal, caller.user_id, caller.verified)
        if visitor:
            await self.rate_limiter.check_request(visitor, limit.per_visitor())
        request = replace(request, ledger_user=ratelimit.budget_user(
            principal, caller.user_id, caller.verified))
        await self.budgets.check(org, request, user=request.ledger_user)
        await self.storage.reserve(org, request)
        # No lock: the store's claim on the conversation (begin_turn / resume_turn) lets
        # one turn run per conversation, across every process on the database, and hands
        # out its sequence numbers.
        if request.resume is not None:
            return await self._resume_turn(principal, org, request)
        return await self._start_new(principal, org, request, mode)

    async def _start_new(
        self, principal: Principal, org: Organisation, request: TurnRequest, mode: str
    ) -> LiveTurn:
        identity = await resolve_identity(self.store, org, request, self.clock,
                                          trusted=principal.key_kind == KeyKind.SECRET)
        caller = Caller(identity.user_id, identity.verified)
        conversation: ConversationRecord | None = None
        if request.conversation_id:
            conversation = await self.resolve_conversation(principal, request.conversation_id)
        elif principal.conversation_id:
            conversation = await self.resolve_conversation(principal, principal.conversation_id)
        if conversation is not None:
            admission.check_owner(principal, caller, conversation, request.conversation_id)
        agent = await self.resolve_agent(
            principal.org_id, request.agent or principal.agent_id, conversation
        )
        client_tools.check_no_clash(request.client_tools, self.tools.specs(agent))
        if conversation is not None:
            self.pipeline.refuse_if_running(conversation.id)
        now = self.clock.now()
        # While a person has the conversation the bot is quiet: no routing, no model.
        held = (await self.handoffs.held(org.id, conversation.id)
                if conversation is not None else None)
        # Routing rules and handoffs run before anything is stored: after a handoff the
        # turn, its reply and the conversation belong to the agent it was handed to.
        plan = router.Plan(agent) if held is not None else await router.plan(
            self.agents, agent, conversation, request.message, mode, now)
        agent = plan.agent
        new_conversation = None
        if conversation is None:
            conversation = ConversationRecord(
                id=self.ids.uuid(), org_id=org.id, agent_id=agent.id,
                user_id=identity.user_id, status="open", last_seq=0,
                created_at=now, updated_at=now, context=identity.context,
                variables=dict(request.variables), owner=admission.owner_for(principal, caller),
            )
            new_conversation = conversation
        turn_id = self.ids.uuid()
        prior: list[MessageRecord] = []
        if new_conversation is not None:
            for item in request.history:
                role = _ROLE_ALIASES.get(item.role.lower(), "user")
                prior.append(self._message(conversation.id, org.id, turn_id, role, item.content,
                                           TurnStatus.COMPLETED, agent_id=agent.id,
                                           metadata={"source": "client_history"}))
        user_message = self._message(
            conversation.id, org.id, turn_id, "user", request.message, TurnStatus.COMPLETED,
            images=request.images,
            metadata={"dialect": request.dialect, "mode": mode, "user_id": identity.user_id},
        )
        turn = TurnRecord(
            id=turn_id, conversation_id=conversation.id, org_id=org.id,
            status=TurnStatus.RUNNING, agent_id=agent.id, first_seq=0, last_seq=0,
            created_at=now, updated_at=now,
            idempotency_key=request.idempotency_key, request_hash=request_hash(request),
        )
        live = await self.pipeline.begin(TurnBegin(
            turn=turn,
            new_conversation=new_conversation,
            prior_messages=tuple(prior),
            user_message=user_message,
            end_user=identity.end_user,
            conversation_context=identity.context if new_conversation is None else None,
            conversation_variables=(
                {**conversation.variables, **request.variables}
                if request.variables and new_conversation is None else None
            ),
            # Operators get the visitor's message with the turn that stores it.
            activity=(ActivityDraft(ActivityKind.MESSAGE, message_data(user_message, True)),)
            if held is not None else (),
        ), request.idempotency_key)
        if held is not None:
            await self.handoffs.published(org.id)
        live.emit(TurnStarted(conversation.id, agent.id, agent.slug, turn_id,
                              new_conversation=new_conversation is not None))
        if plan.handoff is not None:
            live.emit(plan.handoff)
        decision = plan.decision
        history = await self._model_history(org.id, conversation.id)
        state = LoopState(messages=history)
        base = GenerationRequest(
            messages=(),
            context=identity.context_entries,
            traits=identity.traits,
            behavior_context=request.behavior_context,
            instructions=agent.definition.instructions,
            mode=mode,
        )
        # Usage is billed to the resolved identity (verified claims win over the body's).
        billed = replace(request, user_id=identity.user_id or request.user_id)
        self._spawn(live, self._run(live, agent, billed, state, base, decision, held))
        return live

    async def _resume_turn(self, principal: Principal, org: Organisation,
                           request: TurnRequest) -> LiveTurn:
        assert request.resume is not None
        resume = request.resume
        now = self.clock.now()
        digest = request_hash(request)  # as the client sent it (duplicates compare this)
        record = await self.store.get_interrupt(principal.org_id, resume.interrupt_id)
        if record is None or (
            request.conversation_id
            and canonical_conversation_id(request.conversation_id) != record.conversation_id
        ):
            raise not_found(Reason.INTERRUPT_NOT_FOUND,
                            f"Interrupt '{resume.interrupt_id}' not found.")
        if record.status != "pending":
            raise SwitchboardError(Code.ALREADY_EXISTS, Reason.INTERRUPT_ALREADY_RESUMED,
                                   "This interrupt was already resumed.")
        if now >= record.expires_at:
            raise SwitchboardError(Code.FAILED_PRECONDITION, Reason.INTERRUPT_EXPIRED,
                                   "This interrupt has expired.")
        expected = {c.tool_call_id for c in record.calls}
        given = {r.tool_call_id for r in resume.results}
        if given != expected:
            missing = sorted(expected - given)
            unknown = sorted(given - expected)
            raise SwitchboardError(
                Code.INVALID_ARGUMENT, Reason.INVALID_INPUT,
                "resume must carry one result per pending tool call"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unknown {', '.join(unknown)}" if unknown else ""),
            )
        client_tools.check_results(resume)
        conversation = await self.resolve_conversation(principal, record.conversation_id)
        admission.check_owner(
            principal, admission.caller_of(principal, org, request.user_id, request.user_token),
            conversation, request.conversation_id,
        )
        self.pipeline.refuse_if_running(conversation.id)
        if not request.client_tools:  # a resume may omit the tools: reuse the turn's
            request = replace(request, client_tools=client_tools.tools_from_json(
                record.state.get("client_tools")))
        client_tools.check_no_clash(request.client_tools, self.tools.specs(
            await self.resolve_agent(principal.org_id, "", conversation)))
        agent = await self.resolve_agent(principal.org_id, "", conversation)
        # One transaction claims the interrupt and the conversation, and numbers the new
        # segment from the conversation's counter.
        resumed = await self.store.resume_turn(principal.org_id, record.id, now)
        if resumed is None:
            raise SwitchboardError(Code.ALREADY_EXISTS, Reason.INTERRUPT_ALREADY_RESUMED,
                                   "This interrupt was already resumed.")
        live = self.pipeline.register(replace(resumed, request_hash=digest),
                                      request.idempotency_key)
        live.emit(TurnStarted(conversation.id, agent.id, agent.slug, resumed.id, resumed=True))
        state = LoopState.from_json(record.state)
        results = {r.tool_call_id: r for r in resume.results}
        for call in record.calls:
            result = results[call.tool_call_id]
            state.messages.append(ChatMessage("tool", result.result_json,
                                              tool_call_id=call.tool_call_id, name=call.tool_name))
            live.emit(ToolResult(call.tool_call_id, result.result_json, result.is_error))
        base_json = record.state.get("base", {})
        base = GenerationRequest(
            messages=(),
            behavior_context=str(base_json.get("behavior_context", "")),
            instructions=agent.definition.instructions,
            mode=str(base_json.get("mode", "chat")),
            traits=dict(base_json.get("traits", {})),
        )
        # A resume carries no identity: its usage is billed to the conversation's user,
        # and charged to that user's budget when the user was trusted when the turn began
        # (a secret-key caller or a verified token), as the first segment was.
        billed = replace(request, user_id=conversation.user_id or request.user_id,
                         ledger_user=admission.trusted_user(conversation)
                         or request.ledger_user)
        # A person has the conversation now (handed off while the client ran its tools):
        # the results are recorded, the acknowledgement answers, and no model runs.
        held = await self.handoffs.held(org.id, conversation.id)
        self._spawn(live, self._run(live, agent, billed, state, base, None, held))
        return live

    def _spawn(self, live: LiveTurn, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=f"turn-{live.turn_id}")
        live.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _message(
        self, conversation_id: str, org_id: str, turn_id: str, role: str, content: str,
        status: str, **extra: Any,
    ) -> MessageRecord:
        return MessageRecord(
            id=self.ids.uuid(), conversation_id=conversation_id, org_id=org_id, turn_id=turn_id,
            role=role, content=content, status=status, created_at=self.clock.now(), **extra,
        )

    async def _model_history(self, org_id: str, conversation_id: str) -> list[ChatMessage]:
        """The conversation's latest user and assistant messages, oldest first. What an
        operator said is the assistant's side of the conversation to the model, so after a
        release the bot knows what the person told the visitor."""
        messages = await self.store.recent_messages(org_id, conversation_id, HISTORY_FOR_MODEL)
        return [ChatMessage("assistant" if m.role == "operator" else m.role, m.content)
                for m in messages]

    # -- running turns ------------------------------------------------------------------

    async def _run(
        self,
        live: LiveTurn,
        agent: AgentRecord,
        request: TurnRequest,
        state: LoopState,
        base: GenerationRequest,
        decision: router.RouteDecision | None,
        held: HandoffRecord | None = None,
    ) -> None:
        status = TurnStatus.COMPLETED
        routing: Routing | None = None
        pending: tuple[Any, ...] = ()
        error: StreamError | None = None
        try:
            if held is not None:
                routing = Routing(router.DEFAULT_ACTION, held.ticket_id, held.team)
                if held.state == HandoffState.WAITING:
                    state.text = WAITING_ACK.format(team=held.team)
                live.emit(RoutedEvent(routing))
                if state.text:
                    live.emit(TextDelta(state.text))
                status = TurnStatus.ROUTED
            elif decision is not None:
                routing = await self._route(live, agent, decision)
                state.text = decision.message
                live.emit(RoutedEvent(routing))
                live.emit(TextDelta(decision.message))
                status = TurnStatus.ROUTED
            else:
                provider = observe_provider(self._provider_factory(agent), agent)
                tool_ctx = ToolContext(live.org_id, live.conversation_id, agent, self.store,
                                       self.clock, self.ids)
                tools = client_tools.merge_tools(self.tools.specs(agent), request.client_tools)
                inputs = LoopInputs(provider, tuple(tools), tool_ctx, self.tools, base)
                outcome = await run_agent_loop(inputs, state, live.emit)
                pending = outcome.pending
                if pending:
                    status = TurnStatus.INTERRUPTED
        except asyncio.CancelledError:
            status = TurnStatus.STOPPED if live.cancel_reason == CANCEL_STOP else (
                TurnStatus.CANCELLED
            )
            log.info("turn %s %s with %d characters", live.turn_id, status, len(state.text))
        except ProviderError as exc:
            status = TurnStatus.FAILED
            error = StreamError(Code.UNAVAILABLE.name, Reason.PROVIDER_ERROR.value, str(exc))
            log.warning("turn %s: provider failed: %s", live.turn_id, exc)
        except SwitchboardError as exc:
            status = TurnStatus.FAILED
            error = StreamError(exc.code.name, exc.reason.value, exc.message)
        except Exception:
            status = TurnStatus.FAILED
            error = StreamError(Code.INTERNAL.name, Reason.INTERNAL.value, "Internal error.")
            log.exception("turn %s failed", live.turn_id)
        try:
            await self._finish(live, agent, request, state, base, status, routing, pending, error,
                               held=held)
        finally:
            self.live.remove(live)

    async def _route(
        self, live: LiveTurn, agent: AgentRecord, decision: router.RouteDecision
    ) -> Routing:
        """Send the conversation to the team: it waits for a person (core.handoffs)."""
        try:
            return await self.handoffs.request_from_turn(
                live.org_id, live.conversation_id, decision.team, decision.action,
                decision.subject or f"Routed by rule to {decision.team}",
                str(decision.rule.get("reason") or ("livehelp" if decision.rule.get("when", {})
                                                     .get("mode") else "routing_rule")))
        except SwitchboardError as exc:
            if exc.reason != Reason.HANDOFF_STATE:
                raise
            # Requested elsewhere meanwhile (an operator call): it is waiting already.
            current = await self.store.get_handoff(live.org_id, live.conversation_id)
            return Routing(decision.action, current.ticket_id if current else "",
                           current.team if current else decision.team)

    async def _finish(
        self,
        live: LiveTurn,
        agent: AgentRecord,
        request: TurnRequest,
        state: LoopState,
        base: GenerationRequest,
        status: str,
        routing: Routing | None,
        pending: tuple[Any, ...],
        error: StreamError | None,
        held: HandoffRecord | None = None,
    ) -> None:
        """Decide the turn's outcome (reply, interrupt or error) and commit it through the
        pipeline (stored, then published)."""
        live.committing = True
        now = self.clock.now()
        if status in (TurnStatus.STOPPED, TurnStatus.CANCELLED) and not state.usage.total_tokens:
            # Providers report usage at the end; a cut-short turn still consumed tokens.
            state.usage = Usage(
                sum(estimate_tokens(m.content) for m in state.messages),
                estimate_tokens(state.text), "",
            )
        usage = await self.price(live.org_id, state.usage)
        if usage.total_tokens:
            live.emit(UsageEvent(usage))
        messages: list[MessageRecord] = []
        interrupt: InterruptRecord | None = None
        activity: tuple[ActivityDraft, ...] = ()
        if pending:
            expires = now + timedelta(seconds=self.config.interrupt_ttl_s)
            interrupt_id = "int_" + self.ids.uuid().replace("-", "")
            state.usage = usage
            billed_before, state.billed = state.billed, usage
            snapshot = state.to_json()
            state.billed = billed_before
            snapshot["base"] = {
                "behavior_context": base.behavior_context, "mode": base.mode,
                "traits": base.traits,
            }
            snapshot["client_tools"] = client_tools.tools_to_json(request.client_tools)
            interrupt = InterruptRecord(
                id=interrupt_id, org_id=live.org_id, conversation_id=live.conversation_id,
                turn_id=live.turn_id, status="pending",
                calls=tuple(PendingCall(c.id, c.name, c.arguments_json) for c in pending),
                state=snapshot, expires_at=expires, created_at=now,
            )
            terminal: EventBody = InterruptEvent(interrupt_id, tuple(c.id for c in pending),
                                                 expires)
        elif error is not None:
            if state.text:
                messages.append(self._message(
                    live.conversation_id, live.org_id, live.turn_id, "assistant", state.text,
                    status, agent_id=agent.id, actions=tuple(state.actions), usage=usage,
                ))
            terminal = error
        else:
            message = self._message(
                live.conversation_id, live.org_id, live.turn_id, "assistant", state.text, status,
                agent_id=agent.id, actions=tuple(state.actions), confidence=state.confidence,
                usage=usage,
                metadata={"routing": asdict(routing)} if routing else {},
            )
            if held is None:
                # A held turn's acknowledgement is not part of the transcript: the
                # operator sees the visitor's words, not the same notice after each one.
                messages.append(message)
                if message.content:
                    activity = (ActivityDraft(ActivityKind.MESSAGE,
                                              message_data(message, routing is not None)),)
            terminal = Completed(
                text=state.text, actions=tuple(state.actions), confidence=state.confidence,
                usage=usage, routing=routing, status=status, agent_id=agent.id,
                model=usage.model or ("routing" if routing else ""), message_id=message.id,
            )
        # A resumed turn's usage includes its earlier segments, already in the ledger.
        new = Usage(
            usage.prompt_tokens - state.billed.prompt_tokens,
            usage.completion_tokens - state.billed.completion_tokens,
            usage.model,
            usage.cost_micros - state.billed.cost_micros,
        )
        await self.pipeline.commit(
            live, status, terminal, messages=messages, interrupt=interrupt,
            usage=UsageEntry(
                live.org_id, request.ledger_user or request.user_id or "anonymous",
                live.conversation_id,
                live.turn_id, usage.model, new.prompt_tokens, new.completion_tokens,
                new.cost_micros, now,
            ) if new.total_tokens or new.cost_micros else None,
            activity=activity,
        )
        if activity:
            await self.handoffs.published(live.org_id)
        turn_finished(live, agent, request.dialect, status, new)

    # -- reading and controlling turns --------------------------------------------------

    async def run_to_end(self, live: LiveTurn) -> TurnFold:
        """Follow a live turn to its end and fold it (the unary calls)."""
        events = [event async for event in live.follow(0)]
        return fold(events)

    @asynccontextmanager
    async def stream_slot(self, principal: Principal) -> AsyncIterator[None]:
        """Hold one of the key's concurrent-stream slots for the life of a stream."""
        org = await self.store.get_org(principal.org_id)
        limit = RateLimit.from_settings(org.settings.extra if org else {})
        async with self.rate_limiter.stream_slot(principal.key_id, limit):
            yield

    async def stop(self, principal: Principal, conversation_id: str,
                   access: Access | None = None) -> tuple[bool, str]:
        conversation = await admission.admit_conversation(
            self.store, principal, conversation_id, access or Access())
        live = self.live.get(conversation.id)
        if live is None or live.done:
            return await self.live.stop_elsewhere(conversation.id)
        stopped = live.cancel(CANCEL_STOP)
        await live.finished.wait()
        last = live.events[-1].body if live.events else None
        unstored = isinstance(last, StreamError) and last.reason == STORE_UNAVAILABLE
        if stopped and unstored:
            # The turn has ended, but "stopped" promises its partial text is stored: it is
            # not (it is stored as failed once the store allows), so the caller hears 503.
            raise StoreUnavailable(f"turn {live.turn_id}: the stopped turn was not stored")
        return stopped, live.turn_id

    async def follow_conversation(
        self, principal: Principal, conversation_id: str, after_seq: int,
        latest_turn: bool = False, access: Access | None = None,
    ) -> AsyncIterator[Event]:
        """Replay a conversation's events after `after_seq` (or from the start of its latest
        turn) from the store, then follow the live turn (if any) without gap or duplicate."""
        conversation = await admission.admit_conversation(
            self.store, principal, conversation_id, access or Access())
        live = self.live.get(conversation.id)
        remote = await self._running_elsewhere(principal.org_id, conversation.id, live)
        if latest_turn:
            if live is not None:
                after_seq = live.events[0].seq - 1 if live.events else conversation.last_seq
            elif remote is not None:
                # Its running segment opens right after what the store holds (read again:
                # the turn before it may have been stored since the first read).
                fresh = await self.store.get_conversation(principal.org_id, conversation.id)
                after_seq = (fresh or conversation).last_seq
            else:
                turn = await self.store.last_turn(principal.org_id, conversation.id)
                after_seq = turn.first_seq - 1 if turn is not None else conversation.last_seq
                if turn is not None:
                    # A resumed turn has several segments, each opened by a TurnStarted:
                    # the latest segment is the one a reconnecting client has not seen.
                    starts = [e.seq for e in await self.store.list_events(
                        principal.org_id, conversation.id, after_seq, turn_id=turn.id)
                        if isinstance(e.body, TurnStarted)]
                    after_seq = starts[-1] - 1 if starts else after_seq
        last = after_seq
        for event in await self.store.list_events(principal.org_id, conversation.id,
                                                  after_seq):
            last = event.seq
            if remote is not None and event.terminal and event.turn_id == remote.id:
                remote = None  # it ended while we read: the store had all of it
            yield event
        if live is None and remote is None and last == after_seq and not latest_turn:
            # Nothing stored after what the client saw: if a crash cut that turn short,
            # say so rather than answer as if the stream had been complete.
            incomplete = await incomplete_after(self.store, principal.org_id, conversation.id,
                                                after_seq)
            if incomplete is not None:
                yield incomplete
        if live is None and remote is not None and self.live.shared is not None:
            # Running on another replica: its live stream from the last event yielded.
            live = self.live.shared.mirror(remote, last)
        if live is not None:
            async for event in live.follow(last):
                yield event

    async def _running_elsewhere(self, org_id: str, conversation_id: str,
                                 live: LiveTurn | None) -> TurnRecord | None:
        """The conversation's turn running on another replica (read before the store's
        events, so a turn that ends in between is in them), or None."""
        if live is not None or self.live.shared is None:
            return None
        turn = await self.store.last_turn(org_id, conversation_id)
        return turn if turn is not None and turn.status == TurnStatus.RUNNING else None

    def track(self, task: asyncio.Future[Any]) -> None:
        """Work shielded from its caller (turn starts, flow messages) that shutdown waits
        for before the store closes."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def shutdown(self) -> None:
        self.draining = True
        # Starts already past the draining check (admission, the store's claim) register
        # their turns after this point: wait for them first, so the drain below waits for
        # those turns too instead of leaving them to die with the process (the rolling
        # restart test saw such turns end `turn_incomplete` once their lease expired).
        if self._background:
            await asyncio.wait(set(self._background), timeout=self.config.shutdown_grace_s)
        await self.live.drain(self.config.shutdown_grace_s)
        if self._background:
            await asyncio.wait(set(self._background), timeout=self.config.shutdown_grace_s)
        await self.failed_commits.flush(self.config.shutdown_grace_s)

    async def recover(self) -> None:
        """At start-up: turns a crashed process left running are stored as failed, ending
        with a `turn_incomplete` error event (see core.engine.recovery)."""
        count = await recover_running(self.store, self.clock.now(), owner=self.replica_id,
                                      lease_s=LEASE_S, shared=self.live.shared, ids=self.ids)
        if count:
            log.warning("stored %d turns left running by a previous process as failed", count)


def _retrieve(task: asyncio.Future[LiveTurn]) -> None:
    """Mark a start task's outcome as seen: its caller may have left (errors it would
    have received need no log of their own)."""
    if not task.cancelled():
        task.exception()


def fold(events: list[Event]) -> TurnFold:
    """The unary view of a turn's events."""
    started = next((e.body for e in events if isinstance(e.body, TurnStarted)), None)
    last = events[-1]
    pending: list[PendingCall] = []
    interrupt = last.body if isinstance(last.body, InterruptEvent) else None
    if interrupt is not None:
        names = {}
        args: dict[str, list[str]] = {}
        for e in events:
            if isinstance(e.body, ToolCallStart):
                names[e.body.tool_call_id] = e.body.tool_name
            elif isinstance(e.body, ToolCallArgs):
                args.setdefault(e.body.tool_call_id, []).append(e.body.delta)
        pending = [
            PendingCall(cid, names.get(cid, ""), "".join(args.get(cid, [])))
            for cid in interrupt.tool_call_ids
        ]
    return TurnFold(
        conversation_id=last.conversation_id,
        turn_id=last.turn_id,
        agent_id=started.agent_id if started else "",
        agent_slug=started.agent_slug if started else "",
        last_seq=last.seq,
        completed=last.body if isinstance(last.body, Completed) else None,
        interrupt=interrupt,
        pending_calls=tuple(pending),
        error=last.body if isinstance(last.body, StreamError) else None,
        events=tuple(events),
    )


