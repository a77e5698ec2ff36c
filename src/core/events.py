"""The core's event model: what a turn emits, as plain dataclasses.

Every dialect is a projection of this stream; the gRPC servicer converts these to
`switchboard.v1.ChatEvent` in `core.grpc.convert`, the store serialises them with
`event_to_dict` / `event_from_dict` so finished turns can be replayed byte for byte.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from core.clock import from_iso, to_iso


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    cost_micros: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            other.model or self.model,
            self.cost_micros + other.cost_micros,
        )


@dataclass(frozen=True, slots=True)
class ActionData:
    type: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Routing:
    action: str
    ticket_id: str = ""
    team: str = ""


@dataclass(frozen=True, slots=True)
class TurnStarted:
    conversation_id: str
    agent_id: str
    agent_slug: str
    turn_id: str
    resumed: bool = False
    new_conversation: bool = False


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    tool_call_id: str
    tool_name: str
    client_side: bool = False


@dataclass(frozen=True, slots=True)
class ToolCallArgs:
    tool_call_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class ToolCallEnd:
    tool_call_id: str


@dataclass(frozen=True, slots=True)
class ToolResult:
    tool_call_id: str
    result_json: str
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class ActionEvent:
    action: ActionData


@dataclass(frozen=True, slots=True)
class InterruptEvent:
    interrupt_id: str
    tool_call_ids: tuple[str, ...]
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class RoutedEvent:
    routing: Routing


@dataclass(frozen=True, slots=True)
class UsageEvent:
    usage: Usage


@dataclass(frozen=True, slots=True)
class AgentHandoff:
    from_agent_id: str
    to_agent_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StreamError:
    code: str
    reason: str
    message: str


class TurnStatus:
    """String constants stored in the transcript; mirror switchboard.v1.TurnStatus."""

    RUNNING = "running"
    COMPLETED = "completed"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"
    STOPPED = "stopped"
    FAILED = "failed"
    ROUTED = "routed"

    ALL = (RUNNING, COMPLETED, INTERRUPTED, CANCELLED, STOPPED, FAILED, ROUTED)


@dataclass(frozen=True, slots=True)
class Completed:
    text: str
    actions: tuple[ActionData, ...] = ()
    confidence: float = 0.0
    usage: Usage = field(default_factory=Usage)
    routing: Routing | None = None
    status: str = TurnStatus.COMPLETED
    agent_id: str = ""
    model: str = ""
    message_id: str = ""


EventBody = (
    TurnStarted
    | TextDelta
    | ToolCallStart
    | ToolCallArgs
    | ToolCallEnd
    | ToolResult
    | ActionEvent
    | InterruptEvent
    | RoutedEvent
    | UsageEvent
    | AgentHandoff
    | StreamError
    | Completed
)

# Bodies after which a turn's stream ends.
TERMINAL = (Completed, InterruptEvent, StreamError)


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    conversation_id: str
    turn_id: str
    time: datetime
    body: EventBody

    @property
    def terminal(self) -> bool:
        return isinstance(self.body, TERMINAL)


_KINDS: dict[str, type] = {
    "turn_started": TurnStarted,
    "text_delta": TextDelta,
    "tool_call_start": ToolCallStart,
    "tool_call_args": ToolCallArgs,
    "tool_call_end": ToolCallEnd,
    "tool_result": ToolResult,
    "action": ActionEvent,
    "interrupt": InterruptEvent,
    "routed": RoutedEvent,
    "usage": UsageEvent,
    "agent_handoff": AgentHandoff,
    "error": StreamError,
    "completed": Completed,
}
_KIND_OF = {cls: name for name, cls in _KINDS.items()}


def kind_of(body: EventBody) -> str:
    return _KIND_OF[type(body)]


def body_to_dict(body: EventBody) -> dict[str, Any]:
    data = asdict(body)
    if isinstance(body, InterruptEvent):
        data["expires_at"] = to_iso(body.expires_at)
        data["tool_call_ids"] = list(body.tool_call_ids)
    return {"kind": kind_of(body), **data}


def body_from_dict(data: dict[str, Any]) -> EventBody:
    data = dict(data)
    kind = data.pop("kind")
    if kind == "action":
        return ActionEvent(ActionData(**data["action"]))
    if kind == "interrupt":
        return InterruptEvent(
            data["interrupt_id"], tuple(data["tool_call_ids"]), from_iso(data["expires_at"])
        )
    if kind == "routed":
        return RoutedEvent(Routing(**data["routing"]))
    if kind == "usage":
        return UsageEvent(Usage(**data["usage"]))
    if kind == "completed":
        routing = data.pop("routing")
        return Completed(
            **{k: v for k, v in data.items() if k not in ("actions", "usage")},
            actions=tuple(ActionData(**a) for a in data["actions"]),
            usage=Usage(**data["usage"]),
            routing=Routing(**routing) if routing else None,
        )
    cls: Any = _KINDS[kind]
    result: EventBody = cls(**data)
    return result


def event_to_dict(event: Event) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "conversation_id": event.conversation_id,
        "turn_id": event.turn_id,
        "time": event.time.isoformat(),
        "body": body_to_dict(event.body),
    }


def event_from_dict(data: dict[str, Any]) -> Event:
    return Event(
        seq=int(data["seq"]),
        conversation_id=data["conversation_id"],
        turn_id=data["turn_id"],
        time=datetime.fromisoformat(data["time"]),
        body=body_from_dict(data["body"]),
    )
