import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from switchboard.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CheckKeyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CheckKeyResponse(_message.Message):
    __slots__ = ("key_kind",)
    KEY_KIND_FIELD_NUMBER: _ClassVar[int]
    key_kind: str
    def __init__(self, key_kind: _Optional[str] = ...) -> None: ...

class ContextItem(_message.Message):
    __slots__ = ("label", "type", "value")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    label: str
    type: str
    value: _struct_pb2.Value
    def __init__(self, label: _Optional[str] = ..., type: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class HistoryMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class ToolDefinition(_message.Message):
    __slots__ = ("name", "description", "parameters")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    parameters: _struct_pb2.Struct
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ToolResultInput(_message.Message):
    __slots__ = ("tool_call_id", "result_json", "is_error")
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    IS_ERROR_FIELD_NUMBER: _ClassVar[int]
    tool_call_id: str
    result_json: str
    is_error: bool
    def __init__(self, tool_call_id: _Optional[str] = ..., result_json: _Optional[str] = ..., is_error: _Optional[bool] = ...) -> None: ...

class ResumeInput(_message.Message):
    __slots__ = ("interrupt_id", "results")
    INTERRUPT_ID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    interrupt_id: str
    results: _containers.RepeatedCompositeFieldContainer[ToolResultInput]
    def __init__(self, interrupt_id: _Optional[str] = ..., results: _Optional[_Iterable[_Union[ToolResultInput, _Mapping]]] = ...) -> None: ...

class ReportedUsage(_message.Message):
    __slots__ = ("prompt_tokens", "completion_tokens", "total_tokens", "model")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    model: str
    def __init__(self, prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., total_tokens: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...

class TurnInput(_message.Message):
    __slots__ = ("message", "user_id", "company_id", "user_token", "conversation_id", "agent", "mode", "images", "custom_fields", "context", "history", "behavior_context", "client_tools", "resume", "idempotency_key", "origin", "variables", "reported_usage", "intent_name", "dialect", "metadata")
    class ContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ContextItem
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ContextItem, _Mapping]] = ...) -> None: ...
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    COMPANY_ID_FIELD_NUMBER: _ClassVar[int]
    USER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_FIELDS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    BEHAVIOR_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_TOOLS_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    REPORTED_USAGE_FIELD_NUMBER: _ClassVar[int]
    INTENT_NAME_FIELD_NUMBER: _ClassVar[int]
    DIALECT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    message: str
    user_id: str
    company_id: str
    user_token: str
    conversation_id: str
    agent: str
    mode: str
    images: _containers.RepeatedScalarFieldContainer[str]
    custom_fields: _struct_pb2.Struct
    context: _containers.MessageMap[str, ContextItem]
    history: _containers.RepeatedCompositeFieldContainer[HistoryMessage]
    behavior_context: str
    client_tools: _containers.RepeatedCompositeFieldContainer[ToolDefinition]
    resume: ResumeInput
    idempotency_key: str
    origin: str
    variables: _struct_pb2.Struct
    reported_usage: ReportedUsage
    intent_name: str
    dialect: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, message: _Optional[str] = ..., user_id: _Optional[str] = ..., company_id: _Optional[str] = ..., user_token: _Optional[str] = ..., conversation_id: _Optional[str] = ..., agent: _Optional[str] = ..., mode: _Optional[str] = ..., images: _Optional[_Iterable[str]] = ..., custom_fields: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., context: _Optional[_Mapping[str, ContextItem]] = ..., history: _Optional[_Iterable[_Union[HistoryMessage, _Mapping]]] = ..., behavior_context: _Optional[str] = ..., client_tools: _Optional[_Iterable[_Union[ToolDefinition, _Mapping]]] = ..., resume: _Optional[_Union[ResumeInput, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., origin: _Optional[str] = ..., variables: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., reported_usage: _Optional[_Union[ReportedUsage, _Mapping]] = ..., intent_name: _Optional[str] = ..., dialect: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ChatRequest(_message.Message):
    __slots__ = ("turn",)
    TURN_FIELD_NUMBER: _ClassVar[int]
    turn: TurnInput
    def __init__(self, turn: _Optional[_Union[TurnInput, _Mapping]] = ...) -> None: ...

class ChatResponse(_message.Message):
    __slots__ = ("conversation_id", "turn_id", "agent_id", "completed", "interrupt", "pending_tool_calls", "last_seq", "agent_slug")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    INTERRUPT_FIELD_NUMBER: _ClassVar[int]
    PENDING_TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    AGENT_SLUG_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    turn_id: str
    agent_id: str
    completed: _events_pb2.Completed
    interrupt: _events_pb2.Interrupt
    pending_tool_calls: _containers.RepeatedCompositeFieldContainer[PendingToolCall]
    last_seq: int
    agent_slug: str
    def __init__(self, conversation_id: _Optional[str] = ..., turn_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., completed: _Optional[_Union[_events_pb2.Completed, _Mapping]] = ..., interrupt: _Optional[_Union[_events_pb2.Interrupt, _Mapping]] = ..., pending_tool_calls: _Optional[_Iterable[_Union[PendingToolCall, _Mapping]]] = ..., last_seq: _Optional[int] = ..., agent_slug: _Optional[str] = ...) -> None: ...

class PendingToolCall(_message.Message):
    __slots__ = ("tool_call_id", "tool_name", "arguments_json")
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    tool_call_id: str
    tool_name: str
    arguments_json: str
    def __init__(self, tool_call_id: _Optional[str] = ..., tool_name: _Optional[str] = ..., arguments_json: _Optional[str] = ...) -> None: ...

class StreamChatRequest(_message.Message):
    __slots__ = ("turn",)
    TURN_FIELD_NUMBER: _ClassVar[int]
    turn: TurnInput
    def __init__(self, turn: _Optional[_Union[TurnInput, _Mapping]] = ...) -> None: ...

class StreamChatResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _events_pb2.ChatEvent
    def __init__(self, event: _Optional[_Union[_events_pb2.ChatEvent, _Mapping]] = ...) -> None: ...

class StopTurnInput(_message.Message):
    __slots__ = ("conversation_id",)
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    def __init__(self, conversation_id: _Optional[str] = ...) -> None: ...

class ConverseRequest(_message.Message):
    __slots__ = ("start_turn", "stop")
    START_TURN_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    start_turn: TurnInput
    stop: StopTurnInput
    def __init__(self, start_turn: _Optional[_Union[TurnInput, _Mapping]] = ..., stop: _Optional[_Union[StopTurnInput, _Mapping]] = ...) -> None: ...

class ConverseResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _events_pb2.ChatEvent
    def __init__(self, event: _Optional[_Union[_events_pb2.ChatEvent, _Mapping]] = ...) -> None: ...

class StopTurnRequest(_message.Message):
    __slots__ = ("conversation_id", "origin", "dialect", "user_id", "user_token")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    DIALECT_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    origin: str
    dialect: str
    user_id: str
    user_token: str
    def __init__(self, conversation_id: _Optional[str] = ..., origin: _Optional[str] = ..., dialect: _Optional[str] = ..., user_id: _Optional[str] = ..., user_token: _Optional[str] = ...) -> None: ...

class StopTurnResponse(_message.Message):
    __slots__ = ("stopped", "turn_id")
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    stopped: bool
    turn_id: str
    def __init__(self, stopped: _Optional[bool] = ..., turn_id: _Optional[str] = ...) -> None: ...

class ResumeStreamRequest(_message.Message):
    __slots__ = ("conversation_id", "after_seq", "latest_turn", "origin", "dialect", "user_id", "user_token")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LATEST_TURN_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    DIALECT_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    after_seq: int
    latest_turn: bool
    origin: str
    dialect: str
    user_id: str
    user_token: str
    def __init__(self, conversation_id: _Optional[str] = ..., after_seq: _Optional[int] = ..., latest_turn: _Optional[bool] = ..., origin: _Optional[str] = ..., dialect: _Optional[str] = ..., user_id: _Optional[str] = ..., user_token: _Optional[str] = ...) -> None: ...

class ResumeStreamResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _events_pb2.ChatEvent
    def __init__(self, event: _Optional[_Union[_events_pb2.ChatEvent, _Mapping]] = ...) -> None: ...

class GetConversationRequest(_message.Message):
    __slots__ = ("conversation_id", "origin", "user_id", "user_token")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    origin: str
    user_id: str
    user_token: str
    def __init__(self, conversation_id: _Optional[str] = ..., origin: _Optional[str] = ..., user_id: _Optional[str] = ..., user_token: _Optional[str] = ...) -> None: ...

class Conversation(_message.Message):
    __slots__ = ("id", "agent_id", "user_id", "created_at", "updated_at", "last_seq", "message_count", "status")
    ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    id: str
    agent_id: str
    user_id: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    last_seq: int
    message_count: int
    status: str
    def __init__(self, id: _Optional[str] = ..., agent_id: _Optional[str] = ..., user_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seq: _Optional[int] = ..., message_count: _Optional[int] = ..., status: _Optional[str] = ...) -> None: ...

class GetConversationResponse(_message.Message):
    __slots__ = ("conversation",)
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    conversation: Conversation
    def __init__(self, conversation: _Optional[_Union[Conversation, _Mapping]] = ...) -> None: ...

class ListMessagesRequest(_message.Message):
    __slots__ = ("conversation_id", "page_size", "page_token", "origin", "user_id", "user_token")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    page_size: int
    page_token: str
    origin: str
    user_id: str
    user_token: str
    def __init__(self, conversation_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., origin: _Optional[str] = ..., user_id: _Optional[str] = ..., user_token: _Optional[str] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ("id", "conversation_id", "role", "content", "turn_id", "status", "actions", "confidence", "usage", "images", "created_at", "agent_id", "operator_name")
    ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_NAME_FIELD_NUMBER: _ClassVar[int]
    id: str
    conversation_id: str
    role: str
    content: str
    turn_id: str
    status: _events_pb2.TurnStatus
    actions: _containers.RepeatedCompositeFieldContainer[_events_pb2.Action]
    confidence: float
    usage: _events_pb2.Usage
    images: _containers.RepeatedScalarFieldContainer[str]
    created_at: _timestamp_pb2.Timestamp
    agent_id: str
    operator_name: str
    def __init__(self, id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., role: _Optional[str] = ..., content: _Optional[str] = ..., turn_id: _Optional[str] = ..., status: _Optional[_Union[_events_pb2.TurnStatus, str]] = ..., actions: _Optional[_Iterable[_Union[_events_pb2.Action, _Mapping]]] = ..., confidence: _Optional[float] = ..., usage: _Optional[_Union[_events_pb2.Usage, _Mapping]] = ..., images: _Optional[_Iterable[str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., agent_id: _Optional[str] = ..., operator_name: _Optional[str] = ...) -> None: ...

class ListMessagesResponse(_message.Message):
    __slots__ = ("messages", "next_page_token")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[Message]
    next_page_token: str
    def __init__(self, messages: _Optional[_Iterable[_Union[Message, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
