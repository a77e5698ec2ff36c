"""The agent loop: model step → server tools → (client tools interrupt) → next step.

Runs inside a turn's task. Everything it produces goes out through `emit`; it keeps the
partial state (text so far, actions, usage) on `LoopState` so a cancelled turn can be
stored with what it had, and an interrupted one can continue later from `LoopState`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from core import limits
from core.events import (
    ActionData,
    ActionEvent,
    EventBody,
    TextDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallStart,
    ToolResult,
    Usage,
)
from core.providers.base import (
    ChatMessage,
    Confidence,
    GenerationRequest,
    ModelProvider,
    ProviderAction,
    TextChunk,
    ToolCall,
    ToolCallArgsChunk,
    ToolCallBegin,
    ToolCallDone,
    ToolSpec,
    UsageReport,
)
from core.tools import ServerTools, ToolContext


@dataclass
class LoopState:
    """What a turn has produced so far; serialisable for interrupts."""

    messages: list[ChatMessage]
    text: str = ""
    actions: list[ActionData] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    confidence: float = 0.0
    escalated: bool = False
    # Usage already written to the ledger by an earlier segment (before an interrupt).
    billed: Usage = field(default_factory=Usage)
    steps: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "messages": [
                {
                    "role": m.role,
                    "content": m.content,
                    "tool_calls": [
                        {"id": c.id, "name": c.name, "arguments_json": c.arguments_json}
                        for c in m.tool_calls
                    ],
                    "tool_call_id": m.tool_call_id,
                    "name": m.name,
                }
                for m in self.messages
            ],
            "text": self.text,
            "actions": [{"type": a.type, "payload": a.payload} for a in self.actions],
            "usage": {
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
                "model": self.usage.model,
                "cost_micros": self.usage.cost_micros,
            },
            "confidence": self.confidence,
            "escalated": self.escalated,
            "billed": {
                "prompt_tokens": self.billed.prompt_tokens,
                "completion_tokens": self.billed.completion_tokens,
                "model": self.billed.model,
                "cost_micros": self.billed.cost_micros,
            },
            "steps": self.steps,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoopState:
        return cls(
            messages=[
                ChatMessage(
                    role=m["role"],
                    content=m["content"],
                    tool_calls=tuple(ToolCall(**c) for c in m["tool_calls"]),
                    tool_call_id=m["tool_call_id"],
                    name=m["name"],
                )
                for m in data["messages"]
            ],
            text=data["text"],
            actions=[ActionData(**a) for a in data["actions"]],
            usage=Usage(**data["usage"]),
            confidence=float(data["confidence"]),
            escalated=bool(data.get("escalated", False)),
            billed=Usage(**data["billed"]) if "billed" in data else Usage(),
            steps=int(data["steps"]),
        )


@dataclass(frozen=True, slots=True)
class LoopInputs:
    provider: ModelProvider
    tools: tuple[ToolSpec, ...]
    tool_context: ToolContext
    server_tools: ServerTools
    base_request: GenerationRequest  # context, traits, instructions; messages replaced


@dataclass(frozen=True, slots=True)
class LoopOutcome:
    """None in `pending` means the turn finished; otherwise the client calls it waits on."""

    pending: tuple[ToolCall, ...] = ()


async def run_agent_loop(
    inputs: LoopInputs, state: LoopState, emit: Callable[[EventBody], object]
) -> LoopOutcome:
    client_names = {t.name for t in inputs.tools if t.client_side}
    while state.steps < limits.MAX_AGENT_STEPS:
        state.steps += 1
        request = GenerationRequest(
            messages=tuple(state.messages),
            tools=inputs.tools,
            context=inputs.base_request.context,
            traits=inputs.base_request.traits,
            behavior_context=inputs.base_request.behavior_context,
            instructions=inputs.base_request.instructions,
            mode=inputs.base_request.mode,
        )
        step_text: list[str] = []
        names: dict[str, str] = {}
        args: dict[str, list[str]] = {}
        # aclosing: a cancelled turn must close the provider's stream (and its upstream
        # connection) now, not whenever the generator is garbage-collected.
        stream = cast(AsyncGenerator[Any, None], inputs.provider.generate(request))
        async with contextlib.aclosing(stream):
            async for item in stream:
                # A provider that never awaits (a scripted reply with no delay, a buffered
                # upstream) would otherwise hold the event loop for its whole reply and
                # starve every other tenant: give the loop a turn between chunks.
                await asyncio.sleep(0)
                if isinstance(item, TextChunk):
                    if item.text:
                        step_text.append(item.text)
                        state.text += item.text
                        emit(TextDelta(item.text))
                elif isinstance(item, ToolCallBegin):
                    names[item.id] = item.name
                    args[item.id] = []
                    emit(ToolCallStart(item.id, item.name, client_side=item.name in client_names))
                elif isinstance(item, ToolCallArgsChunk):
                    args.setdefault(item.id, []).append(item.delta)
                    emit(ToolCallArgs(item.id, item.delta))
                elif isinstance(item, ToolCallDone):
                    emit(ToolCallEnd(item.id))
                elif isinstance(item, ProviderAction):
                    state.actions.append(item.action)
                    emit(ActionEvent(item.action))
                elif isinstance(item, Confidence):
                    state.confidence = max(0.0, min(1.0, item.value))
                    state.escalated = state.escalated or item.escalate
                elif isinstance(item, UsageReport):
                    state.usage = state.usage + Usage(
                        item.prompt_tokens, item.completion_tokens, item.model
                    )
        calls = tuple(ToolCall(cid, names[cid], "".join(args.get(cid, []))) for cid in names)
        if not calls:
            return LoopOutcome()
        state.messages.append(ChatMessage("assistant", "".join(step_text), tool_calls=calls))
        for call in calls:
            if call.name in client_names:
                continue
            run = await inputs.server_tools.run(inputs.tool_context, call.name, call.arguments_json)
            state.messages.append(
                ChatMessage("tool", run.result_json, tool_call_id=call.id, name=call.name)
            )
            emit(ToolResult(call.id, run.result_json, run.is_error))
            for action in run.actions:
                state.actions.append(action)
                emit(ActionEvent(action))
        pending = tuple(c for c in calls if c.name in client_names)
        if pending:
            return LoopOutcome(pending=pending)
    return LoopOutcome()
