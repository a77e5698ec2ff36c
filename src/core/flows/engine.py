"""The flow engine: sessions, messages (new executions and continuations), transcripts.

One message is one turn of the conversation, whatever surface carried it, and goes
through the same write path as a chat turn (`core.engine.pipeline`): the same admission
(rate limit, budget), the store's claim on the conversation and its sequence numbers, the
live registry (a client following the conversation sees the flow turn), and one commit
of the events, the user's text and the agent's blocks (rendered as text) with the turn's
priced usage in the ledger. This module only decides what the flow says.

Continuing with a wait token checks, in order: the token exists in the session's
conversation (else NOT_FOUND `wait_not_found`), it was not used (ALREADY_EXISTS
`wait_already_used`), it has not expired (FAILED_PRECONDITION `wait_expired`), and the
answer fits the expected input (INVALID_ARGUMENT `input_mismatch`; the token stays
usable). Only then is the token claimed, atomically, so one answer runs once.

From the admission on, a message runs in its own task, apart from the RPC that carried it
(as chat turns do): a client deadline or disconnect does not interrupt it, so a claimed
wait always ends in a stored execution, a finished turn and (with an Idempotency-Key) a
stored reply that a retry replays. An unexpected error once the wait is claimed or the
turn begun (a store failure, a bug) does not leave them half-done either: the turn is
stored as failed, the execution as `failed`, and the reply is an `error` block.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any, NoReturn

from core.clock import Clock, IdSource
from core.domain import (
    AgentRecord,
    ConversationRecord,
    KeyKind,
    MessageRecord,
    Principal,
    ReportedUsage,
    TurnRecord,
    TurnRequest,
)
from core.engine import admission
from core.engine.admission import Access
from core.engine.idempotency import IDEMPOTENCY_WINDOW_S, scoped_key
from core.engine.live import LiveTurn
from core.engine.turns import TurnEngine
from core.errors import Code, Reason, SwitchboardError, not_found
from core.events import (
    Completed,
    RoutedEvent,
    StreamError,
    TextDelta,
    TurnStarted,
    TurnStatus,
    Usage,
    UsageEvent,
)
from core.flows import limits
from core.flows.builtins import FLOW_TOOLS
from core.flows.definition import Flow, parse_flows
from core.flows.inputs import InputMismatch, check_answer, mismatch_error
from core.flows.messages import FlowMessage, FlowReply, Intent, SessionInfo
from core.flows.replies import message_hash, reply_from_json, reply_to_json
from core.flows.runner import Runner, RunOutcome, RunState
from core.flows.sessions import SessionTokens
from core.flows.store import ExecutionRecord, ExecutionStatus, WaitRecord, flow_store
from core.flows.templates import as_text
from core.flows.variables import (
    check_context,
    check_idempotency_key,
    check_intent,
    check_text,
    check_usage,
    check_variables,
    normalize_numbers,
    raise_if_any,
)
from core.keys import require_kind
from core.pricing import Pricing
from core.providers.base import ChatMessage, GenerationRequest, TextChunk, UsageReport
from core.providers.registry import build_provider
from core.ratelimit import RateLimit, visitor_key
from core.store.base import Store, TurnBegin, TurnConflict, UsageEntry
from core.store.failures import StoreUnavailable
from core.tools import ServerTools, ToolContext

log = logging.getLogger("switchboard.flows")

WAIT_TOKEN_PREFIX = "wt_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def intents_of(agent: AgentRecord) -> tuple[Intent, ...]:
    return tuple(Intent(f.name, f.description) for f in parse_flows(agent.definition.flows)
                 .values())


class _EngineIO:
    """The side effects of one run: tools, the agent's model and tickets."""

    def __init__(self, engine: FlowEngine, agent: AgentRecord, org_id: str,
                 conversation_id: str) -> None:
        self._engine = engine
        self._agent = agent
        self._ctx = ToolContext(org_id, conversation_id, agent, engine.store, engine.clock,
                                engine.ids)

    async def call_tool(self, name: str, args: dict[str, Any]) -> tuple[Any, bool]:
        flow_tool = FLOW_TOOLS.get(name)
        if flow_tool is not None:
            return await flow_tool(args), False
        run = await self._engine.tools.run(self._ctx, name, json.dumps(args))
        return run.result, run.is_error

    async def generate(self, prompt: str) -> tuple[str, Usage]:
        provider = build_provider(self._agent.definition, self._agent.id)
        request = GenerationRequest(
            messages=(ChatMessage("user", prompt),),
            instructions=self._agent.definition.instructions,
        )
        parts: list[str] = []
        usage = Usage(model=provider.model_name)
        async for event in provider.generate(request):
            if isinstance(event, TextChunk):
                parts.append(event.text)
            elif isinstance(event, UsageReport):
                usage = usage + Usage(event.prompt_tokens, event.completion_tokens, event.model)
        return "".join(parts).strip(), usage

    async def handoff(self, team: str, subject: str) -> str:
        """A `handoff` step: the conversation waits for a person (core.handoffs), with its
        ticket. Already waiting or with an operator: just another ticket."""
        try:
            routing = await self._engine.turns.handoffs.request_from_turn(
                self._ctx.org_id, self._ctx.conversation_id, team, "route_to_team", subject,
                "flow_handoff")
            return routing.ticket_id
        except SwitchboardError as exc:
            if exc.reason != Reason.HANDOFF_STATE:
                raise
        ticket_id = "tkt_" + self._engine.ids.uuid().replace("-", "")[:12]
        await self._engine.store.create_ticket(
            ticket_id, self._ctx.org_id, self._ctx.conversation_id, team, subject,
            self._engine.clock.now(),
        )
        return ticket_id


class FlowEngine:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        ids: IdSource,
        sessions: SessionTokens,
        turns: TurnEngine,
        pricing: Pricing | None = None,
        tools: ServerTools | None = None,
    ) -> None:
        self.store = store
        self.flows = flow_store(store)
        self.clock = clock
        self.ids = ids
        self.sessions = sessions
        self.turns = turns
        # Flow messages are turns: the same admission, claim, numbering, ledger and live
        # registry as chat turns (a flow is one more way an agent answers).
        self.pipeline = turns.pipeline
        self.pricing = pricing or Pricing(store)
        self.tools = tools or turns.tools
        # Messages running apart from their RPC (kept here so they are not collected).
        self._tasks: set[asyncio.Task[FlowReply]] = set()

    # -- sessions and intents -----------------------------------------------------------

    async def create_session(self, principal: Principal, agent_ref: str = "",
                             conversation_id: str = "", origin: str = "",
                             access: Access | None = None) -> SessionInfo:
        require_kind(principal, KeyKind.PUBLISHABLE, KeyKind.SECRET)
        org = await self.pipeline.admit_caller(principal, origin)
        # require_identity holds here as on every surface: the session's conversation
        # belongs to the (verified) user who asked for it.
        caller = admission.caller_of(principal, org, access.user_id if access else "",
                                     access.user_token if access else "")
        # The key's own bucket: sessions share it (their principal carries the key's id), so
        # minting sessions neither escapes the key's limits nor is itself unlimited.
        limit = RateLimit.from_settings(org.settings.extra)
        await self.turns.rate_limiter.check_request(principal.key_id, limit)
        visitor = visitor_key(principal, caller.user_id, caller.verified)
        if visitor:
            await self.turns.rate_limiter.check_request(visitor, limit.per_visitor())
        conversation = (await self.turns.resolve_conversation(principal, conversation_id)
                        if conversation_id else None)
        if conversation is not None:
            admission.check_owner(principal, caller, conversation, conversation_id)
        agent = await self.turns.resolve_agent(org.id, agent_ref, conversation)
        if conversation is None:
            now = self.clock.now()
            conversation = ConversationRecord(
                # Flow usage is charged to the conversation's user: only a proven one.
                id=self.ids.uuid(), org_id=org.id, agent_id=agent.id,
                user_id=caller.user_id if caller.verified else "anonymous",
                status="open", last_seq=0, created_at=now, updated_at=now,
                owner=admission.owner_for(principal, caller),
            )
            await self.store.create_conversation(conversation)
        token, expires = self.sessions.issue(org.id, agent.id, conversation.id,
                                             principal.key_id)
        return SessionInfo(token, expires, conversation.id, agent.id, intents_of(agent))

    async def _session_agent(self, principal: Principal) -> AgentRecord:
        if principal.key_kind != KeyKind.SESSION:
            raise SwitchboardError(
                Code.PERMISSION_DENIED, Reason.KEY_SCOPE,
                "Flow messages need a session token (create one with CreateSession / "
                "POST /api/public/v1/chat/sessions).",
            )
        agent = await self.turns.agents.get(principal.org_id, principal.agent_id)
        if agent is None:
            raise not_found(Reason.AGENT_NOT_FOUND, "The session's agent no longer exists.")
        return agent

    async def list_intents(self, principal: Principal) -> tuple[Intent, ...]:
        return intents_of(await self._session_agent(principal))

    async def get_execution(self, principal: Principal, execution_id: str) -> ExecutionRecord:
        execution = await self.flows.get_execution(principal.org_id, execution_id)
        if execution is None or (principal.conversation_id
                                 and execution.conversation_id != principal.conversation_id):
            raise not_found(Reason.CONVERSATION_NOT_FOUND,
                            f"Execution '{execution_id}' not found.")
        return execution

    # -- messages -----------------------------------------------------------------------

    def _validate(self, message: FlowMessage) -> FlowMessage:
        variables = normalize_numbers(message.variables)
        violations = [
            *check_text(message.text, required=not message.wait_token),
            *check_intent(message.intent_name, required=not message.wait_token),
            *check_variables(variables),
            *check_context(message.context),
            *check_idempotency_key(message.idempotency_key),
        ]
        if message.usage is not None:
            u = message.usage
            violations += check_usage(u.prompt_tokens, u.completion_tokens, u.total_tokens,
                                      u.model)
        raise_if_any(violations)
        return FlowMessage(
            text=message.text, intent_name=message.intent_name,
            context=normalize_numbers(message.context), variables=variables,
            usage=message.usage, wait_token=message.wait_token,
            input=normalize_numbers(message.input), has_input=message.has_input,
            idempotency_key=message.idempotency_key,
        )

    async def send_message(self, principal: Principal, message: FlowMessage,
                           origin: str = "") -> FlowReply:
        if self.turns.draining:
            raise SwitchboardError(Code.UNAVAILABLE, Reason.SHUTTING_DOWN,
                                   "Server is shutting down; retry shortly.")
        await admission.admit_key(self.store, principal, origin)
        agent = await self._session_agent(principal)
        message = self._validate(message)
        conversation = await self.turns.resolve_conversation(principal,
                                                             principal.conversation_id)
        # Nothing is written up to here. The rest runs in its own task: cancelling the RPC
        # (deadline, disconnect) cancels only the wait for it, never the message itself.
        return await self._detached(self._process(principal, agent, conversation, message))

    async def _detached(self, work: Coroutine[Any, Any, FlowReply]) -> FlowReply:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        self.turns.track(task)
        task.add_done_callback(self._forget)
        return await asyncio.shield(task)

    def _forget(self, task: asyncio.Task[FlowReply]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved even when the caller has gone away
        if exc is not None and not isinstance(exc, SwitchboardError):
            log.error("flow message failed", exc_info=exc)

    async def _process(self, principal: Principal, agent: AgentRecord,
                       conversation: ConversationRecord, message: FlowMessage) -> FlowReply:
        """Admit and run the message; with an Idempotency-Key, under the key's lock (held
        until the reply is stored, so a retry waits for it and replays it)."""
        if not message.idempotency_key:
            return await self._admit_and_send(principal, agent, conversation, message, "")
        key = scoped_key(principal, message.idempotency_key)
        async with self.turns.idempotency.lock(principal.org_id, key):
            digest = message_hash(conversation.id, message)
            stored = await self.flows.get_flow_reply(principal.org_id, key)
            window = timedelta(seconds=IDEMPOTENCY_WINDOW_S)
            if stored is not None and self.clock.now() - stored[2] <= window:
                if stored[0] != digest:
                    raise SwitchboardError(
                        Code.ABORTED, Reason.IDEMPOTENCY_MISMATCH,
                        "This Idempotency-Key was already used with a different request.",
                    )
                return reply_from_json(stored[1])
            reply = await self._admit_and_send(principal, agent, conversation, message, key)
            await self.flows.put_flow_reply(principal.org_id, key, digest,
                                            reply_to_json(reply), self.clock.now())
            return reply

    async def _admit_and_send(self, principal: Principal, agent: AgentRecord,
                              conversation: ConversationRecord,
                              message: FlowMessage, key: str) -> FlowReply:
        """Rate limit and budget (as for chat turns), then run the message."""
        org = await self.store.get_org(principal.org_id)
        if org is not None:
            limit = RateLimit.from_settings(org.settings.extra)
            await self.turns.rate_limiter.check_request(principal.key_id, limit)
            visitor = visitor_key(principal, conversation.user_id,
                                  conversation.owner.startswith(admission.OWNER_USER_PREFIX))
            if visitor:
                await self.turns.rate_limiter.check_request(visitor, limit.per_visitor())
            await self.turns.budgets.check(org, TurnRequest(message=message.text))
            await self.turns.storage.reserve(org, TurnRequest(message=message.text))
        # A chat turn running here is refused early; across processes the store's claim
        # on the conversation (begin_turn) decides.
        self.pipeline.refuse_if_running(conversation.id)
        if message.wait_token:
            return await self._continue(principal, agent, message, key)
        return await self._start(principal, agent, message, key)

    def _flows(self, agent: AgentRecord) -> dict[str, Flow]:
        return parse_flows(agent.definition.flows)

    async def _start(self, principal: Principal, agent: AgentRecord,
                     message: FlowMessage, key: str) -> FlowReply:
        flows = self._flows(agent)
        flow = flows.get(message.intent_name)
        if flow is None:
            allowed = sorted(flows)
            raise SwitchboardError(
                Code.INVALID_ARGUMENT, Reason.INTENT_NOT_FOUND,
                f"Unknown intent '{message.intent_name}'; this session's intents are: "
                f"{', '.join(allowed) or '(none)'}.",
                {"field": "intentName"}, details={"allowed_intents": allowed},
            )
        now = self.clock.now()
        execution = ExecutionRecord(
            id=self.ids.uuid(), org_id=principal.org_id, agent_id=agent.id,
            conversation_id=principal.conversation_id, intent=flow.name,
            status=ExecutionStatus.RUNNING, current_step=flow.steps[0].id, state={},
            steps_run=0, created_at=now, updated_at=now,
        )
        state = RunState(context=dict(message.context))
        conversation = await self._conversation(execution)
        runner = self._runner(flow, state, agent, execution, message, conversation)
        return await self._run(runner, flow.steps[0], agent, execution, message, conversation,
                               key)

    async def _continue(self, principal: Principal, agent: AgentRecord,
                        message: FlowMessage, key: str) -> FlowReply:
        token_hash = hash_token(message.wait_token)
        wait = await self.flows.get_wait(principal.org_id, token_hash)
        if wait is None or wait.conversation_id != principal.conversation_id:
            raise not_found(Reason.WAIT_NOT_FOUND, "Unknown wait token.")
        if wait.status != "pending":
            await self._raise_used(principal.org_id, wait)
        now = self.clock.now()
        if now >= wait.expires_at:
            raise SwitchboardError(Code.FAILED_PRECONDITION, Reason.WAIT_EXPIRED,
                                   "This wait token has expired; start the intent again.")
        answer = message.input if message.has_input else message.text
        try:
            value = check_answer(wait.expected_input, answer)
        except InputMismatch as exc:
            raise mismatch_error(wait.expected_input, exc.message) from None
        execution = await self.flows.get_execution(principal.org_id, wait.execution_id)
        assert execution is not None, "a wait always has its execution"
        flow = self._flows(agent).get(execution.intent)
        ask = flow.step(wait.step_id) if flow is not None else None
        if flow is None or ask is None or ask.kind != "ask":
            raise SwitchboardError(Code.FAILED_PRECONDITION, Reason.INTENT_NOT_FOUND,
                                   "The flow this execution ran has changed; start it again.")
        # Everything the run needs is read before the claim: once the token is claimed,
        # `_run` sees to it that the execution is saved, whatever happens.
        conversation = await self._conversation(execution)
        state = RunState.from_json(execution.state)
        state.context.update(message.context)
        runner = self._runner(flow, state, agent, execution, message, conversation)
        step = runner.answer(ask, value)
        if not await self.flows.claim_wait(principal.org_id, token_hash, now):
            raise SwitchboardError(Code.ALREADY_EXISTS, Reason.WAIT_ALREADY_USED,
                                   "This wait token was already used.")
        return await self._run(runner, step, agent, execution, message, conversation, key)

    async def _raise_used(self, org_id: str, wait: WaitRecord) -> NoReturn:
        execution = await self.flows.get_execution(org_id, wait.execution_id)
        if execution is not None and execution.status == ExecutionStatus.FAILED:
            raise SwitchboardError(Code.ALREADY_EXISTS, Reason.WAIT_ALREADY_USED,
                                   "This wait token was already used and its execution "
                                   "failed; start the intent again.")
        raise SwitchboardError(Code.ALREADY_EXISTS, Reason.WAIT_ALREADY_USED,
                               "This wait token was already used.")

    async def _conversation(self, execution: ExecutionRecord) -> ConversationRecord:
        """The execution's conversation, read under the conversation lock (so `last_seq` is
        current)."""
        conversation = await self.store.get_conversation(execution.org_id,
                                                         execution.conversation_id)
        if conversation is None:
            raise not_found(Reason.CONVERSATION_NOT_FOUND, "The conversation no longer exists.")
        return conversation

    def _runner(self, flow: Flow, state: RunState, agent: AgentRecord,
                execution: ExecutionRecord, message: FlowMessage,
                conversation: ConversationRecord) -> Runner:
        stored = conversation.variables
        request_scope = {
            "variables": {**stored, **message.variables},
            "text": message.text,
            "intent": flow.name,
            "conversation_id": execution.conversation_id,
            "execution_id": execution.id,
        }
        io = _EngineIO(self, agent, execution.org_id, execution.conversation_id)
        return Runner(flow, state, io, request_scope)

    async def _run(self, runner: Runner, step: Any, agent: AgentRecord,
                   execution: ExecutionRecord, message: FlowMessage,
                   conversation: ConversationRecord, key: str = "") -> FlowReply:
        """Begin the turn, run the flow, commit the turn and save the execution. Past this
        point (a claimed wait) nothing may be left half-done: an error stores the turn as
        failed and the execution as `failed` (see `_fail`)."""
        turn_id = self.ids.uuid()
        now = self.clock.now()
        user_text = message.text or as_text(message.input)
        begin = TurnBegin(
            turn=TurnRecord(
                id=turn_id, conversation_id=conversation.id, org_id=execution.org_id,
                status=TurnStatus.RUNNING, agent_id=agent.id, first_seq=0, last_seq=0,
                created_at=now, updated_at=now, idempotency_key=key,
                request_hash=message_hash(conversation.id, message) if key else "",
            ),
            user_message=self._message(
                conversation.id, execution.org_id, turn_id, "user", user_text,
                metadata={"dialect": "flow", "intent": execution.intent,
                          "execution_id": execution.id},
            ),
            conversation_variables=(
                {**conversation.variables, **message.variables} if message.variables else None
            ),
        )
        live: LiveTurn | None = None
        try:
            # The store claims the conversation (and the key) and numbers the events.
            live = await self.pipeline.begin(begin, key)
            live.emit(TurnStarted(conversation.id, agent.id, agent.slug, turn_id))
            outcome = await runner.run(step)
            usage = await self._price(execution.org_id, message.usage, outcome.usage)
            reply_text = "\n\n".join(t for t in (b.as_text() for b in outcome.blocks) if t)
            stored = await self._commit(live, conversation, agent, execution, outcome, usage,
                                        reply_text)
            if not stored:  # the pipeline stored the turn as failed instead
                live = None
                raise RuntimeError("the flow turn could not be stored")
            live = None
            return await self._save(runner, execution, outcome, usage)
        except TurnConflict:
            raise  # raised by the claim, before anything was begun: the caller retries
        except Exception as exc:
            if isinstance(exc, StoreUnavailable):
                log.warning("flow %s: execution %s could not be stored: %s",
                            execution.intent, execution.id, exc.cause)
            else:
                log.exception("flow %s: execution %s could not be run or stored",
                              execution.intent, execution.id)
            return await self._fail(runner, execution, live)

    async def _fail(self, runner: Runner, execution: ExecutionRecord,
                    live: LiveTurn | None) -> FlowReply:
        """Store a run that broke (not a failing step: the runner handles those) as failed:
        the turn still open (if any) ends with an internal error, the execution is `failed`
        and the reply is an `error` block — stored like any reply, so a retry with the same
        Idempotency-Key gets it and the wait token says its execution failed."""
        outcome = runner.fail("internal_error",
                              "Sorry, something went wrong in this conversation flow.")
        try:
            if live is not None and not live.done:
                await self.pipeline.commit(live, TurnStatus.FAILED, StreamError(
                    Code.INTERNAL.name, Reason.INTERNAL.value, "Internal error."))
            return await self._save(runner, execution, outcome, Usage())
        except StoreUnavailable:
            # 503: the client retries once the store can be written (the pipeline stores
            # the turn as failed once the store allows).
            raise
        except Exception:
            log.exception("flow %s: execution %s could not be stored as failed",
                          execution.intent, execution.id)
            raise SwitchboardError(Code.INTERNAL, Reason.INTERNAL,
                                   "The message could not be stored.") from None

    async def _price(self, org_id: str, reported: ReportedUsage | None,
                     generated: Usage) -> Usage:
        """Reported and generated usage, each priced at its own model, summed in micros.
        The reply names the reported model when there is one."""
        client = Usage()
        if reported is not None:
            client = await self.pricing.price(org_id, Usage(
                reported.prompt_tokens, reported.completion_tokens, reported.model))
        flow = await self.pricing.price(org_id, generated)
        return Usage(
            client.prompt_tokens + flow.prompt_tokens,
            client.completion_tokens + flow.completion_tokens,
            client.model or flow.model,
            client.cost_micros + flow.cost_micros,
        )

    def _message(self, conversation_id: str, org_id: str, turn_id: str, role: str,
                 content: str, **extra: Any) -> MessageRecord:
        return MessageRecord(
            id=self.ids.uuid(), conversation_id=conversation_id, org_id=org_id,
            turn_id=turn_id, role=role, content=content, status=TurnStatus.COMPLETED,
            created_at=self.clock.now(), **extra,
        )

    async def _commit(self, live: LiveTurn, conversation: ConversationRecord,
                      agent: AgentRecord, execution: ExecutionRecord, outcome: RunOutcome,
                      usage: Usage, text: str) -> bool:
        status = TurnStatus.ROUTED if outcome.routing is not None else TurnStatus.COMPLETED
        metadata: dict[str, Any] = {"flow": {
            "execution_id": execution.id, "intent": execution.intent,
            "status": outcome.status,
            "blocks": [{"type": b.type, "id": b.id, "payload": b.payload, "meta": b.meta}
                       for b in outcome.blocks],
        }}
        if outcome.routing is not None:
            metadata["routing"] = {"action": outcome.routing.action,
                                   "ticket_id": outcome.routing.ticket_id,
                                   "team": outcome.routing.team}
        reply = self._message(conversation.id, execution.org_id, live.turn_id, "assistant",
                              text, agent_id=agent.id, actions=tuple(outcome.actions),
                              usage=usage, confidence=1.0, metadata=metadata)
        if outcome.routing is not None:
            live.emit(RoutedEvent(outcome.routing))
        if text:
            live.emit(TextDelta(text))
        if usage.total_tokens:
            live.emit(UsageEvent(usage))
        ledger = None
        if usage.total_tokens or usage.cost_micros:
            ledger = UsageEntry(execution.org_id, conversation.user_id or "anonymous",
                                conversation.id, live.turn_id, usage.model,
                                usage.prompt_tokens, usage.completion_tokens,
                                usage.cost_micros, self.clock.now())
        return await self.pipeline.commit(live, status, Completed(
            text=text, actions=tuple(outcome.actions), confidence=1.0, usage=usage,
            routing=outcome.routing, status=status, agent_id=agent.id,
            model=usage.model or "flow", message_id=reply.id,
        ), messages=(reply,), usage=ledger)

    async def _save(self, runner: Runner, execution: ExecutionRecord, outcome: RunOutcome,
                    usage: Usage) -> FlowReply:
        now = self.clock.now()
        wait: WaitRecord | None = None
        token = ""
        expires: datetime | None = None
        if outcome.status == ExecutionStatus.WAITING:
            assert outcome.expected_input is not None
            token = WAIT_TOKEN_PREFIX + self.ids.token(24)
            expires = now + timedelta(seconds=limits.WAIT_TTL_S)
            wait = WaitRecord(
                token_hash=hash_token(token), org_id=execution.org_id,
                execution_id=execution.id, conversation_id=execution.conversation_id,
                step_id=runner.state.step, expected_input=outcome.expected_input,
                status="pending", expires_at=expires, created_at=now,
            )
        saved = ExecutionRecord(
            id=execution.id, org_id=execution.org_id, agent_id=execution.agent_id,
            conversation_id=execution.conversation_id, intent=execution.intent,
            status=outcome.status, current_step=runner.state.step,
            state=runner.state.to_json(), steps_run=runner.state.steps_run,
            created_at=execution.created_at, updated_at=now,
            expected_input=outcome.expected_input, wait_expires_at=expires,
        )
        await self.flows.save_execution(saved, wait)
        return FlowReply(
            execution_id=execution.id, conversation_id=execution.conversation_id,
            blocks=tuple(outcome.blocks), status=outcome.status, usage=usage,
            expected_input=outcome.expected_input, wait_token=token, wait_expires_at=expires,
        )
