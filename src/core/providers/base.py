"""The model-provider interface.

A provider turns a `GenerationRequest` (the conversation so far, the tools on offer, the
request's context) into an async stream of `ProviderEvent`s. The engine owns everything
else: tool execution, interrupts, events, the transcript. Providers must be cancellable at
any await point (the engine cancels the task when a turn is stopped or its client leaves)
and must not block the event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.events import ActionData


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments_json: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of the model conversation (OpenAI-style roles)."""

    role: str  # system | user | assistant | tool
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""  # for role == "tool"
    name: str = ""


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)
    client_side: bool = False


@dataclass(frozen=True, slots=True)
class ContextEntry:
    label: str
    type: str
    value: Any


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    messages: tuple[ChatMessage, ...]
    tools: tuple[ToolSpec, ...] = ()
    context: dict[str, ContextEntry] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)
    behavior_context: str = ""
    instructions: str = ""
    mode: str = "chat"

    @property
    def last_user_message(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return ""


@dataclass(frozen=True, slots=True)
class TextChunk:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallBegin:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ToolCallArgsChunk:
    id: str
    delta: str


@dataclass(frozen=True, slots=True)
class ToolCallDone:
    id: str


@dataclass(frozen=True, slots=True)
class ProviderAction:
    """An action the provider resolved (citation, escalation offer, ...)."""

    action: ActionData


@dataclass(frozen=True, slots=True)
class Confidence:
    """The provider's confidence in its answer, 0..1."""

    value: float
    escalate: bool = False


@dataclass(frozen=True, slots=True)
class UsageReport:
    prompt_tokens: int
    completion_tokens: int
    model: str


ProviderEvent = (
    TextChunk
    | ToolCallBegin
    | ToolCallArgsChunk
    | ToolCallDone
    | ProviderAction
    | Confidence
    | UsageReport
)


class ModelProvider(Protocol):
    """Generates one model step. Tool calls end the step; the engine runs them and calls
    `generate` again with their results appended to `messages`."""

    @property
    def model_name(self) -> str: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[ProviderEvent]: ...


class ProviderError(Exception):
    """The provider failed (upstream error, timeout). Carries a user-safe message."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


def estimate_tokens(text: str) -> int:
    """A cheap, documented token estimate (~4 characters a token) for providers that do
    not report usage."""
    return max(1, (len(text) + 3) // 4) if text else 0
