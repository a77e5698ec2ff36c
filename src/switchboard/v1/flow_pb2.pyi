import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from switchboard.v1 import chat_pb2 as _chat_pb2
from switchboard.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExecutionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXECUTION_STATUS_UNSPECIFIED: _ClassVar[ExecutionStatus]
    EXECUTION_STATUS_RUNNING: _ClassVar[ExecutionStatus]
    EXECUTION_STATUS_WAITING: _ClassVar[ExecutionStatus]
    EXECUTION_STATUS_COMPLETED: _ClassVar[ExecutionStatus]
    EXECUTION_STATUS_HANDED_OFF: _ClassVar[ExecutionStatus]
    EXECUTION_STATUS_FAILED: _ClassVar[ExecutionStatus]
EXECUTION_STATUS_UNSPECIFIED: ExecutionStatus
EXECUTION_STATUS_RUNNING: ExecutionStatus
EXECUTION_STATUS_WAITING: ExecutionStatus
EXECUTION_STATUS_COMPLETED: ExecutionStatus
EXECUTION_STATUS_HANDED_OFF: ExecutionStatus
EXECUTION_STATUS_FAILED: ExecutionStatus

class Intent(_message.Message):
    __slots__ = ("name", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class CreateSessionRequest(_message.Message):
    __slots__ = ("agent", "conversation_id", "origin", "user_id", "user_token")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    agent: str
    conversation_id: str
    origin: str
    user_id: str
    user_token: str
    def __init__(self, agent: _Optional[str] = ..., conversation_id: _Optional[str] = ..., origin: _Optional[str] = ..., user_id: _Optional[str] = ..., user_token: _Optional[str] = ...) -> None: ...

class CreateSessionResponse(_message.Message):
    __slots__ = ("token", "expires_at", "conversation_id", "agent_id", "intents")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    INTENTS_FIELD_NUMBER: _ClassVar[int]
    token: str
    expires_at: _timestamp_pb2.Timestamp
    conversation_id: str
    agent_id: str
    intents: _containers.RepeatedCompositeFieldContainer[Intent]
    def __init__(self, token: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., conversation_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., intents: _Optional[_Iterable[_Union[Intent, _Mapping]]] = ...) -> None: ...

class ListIntentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListIntentsResponse(_message.Message):
    __slots__ = ("intents",)
    INTENTS_FIELD_NUMBER: _ClassVar[int]
    intents: _containers.RepeatedCompositeFieldContainer[Intent]
    def __init__(self, intents: _Optional[_Iterable[_Union[Intent, _Mapping]]] = ...) -> None: ...

class SendMessageRequest(_message.Message):
    __slots__ = ("text", "intent_name", "context", "variables", "token_usage", "wait_token", "input", "idempotency_key", "origin")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    INTENT_NAME_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    TOKEN_USAGE_FIELD_NUMBER: _ClassVar[int]
    WAIT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    text: str
    intent_name: str
    context: _struct_pb2.Struct
    variables: _struct_pb2.Struct
    token_usage: _chat_pb2.ReportedUsage
    wait_token: str
    input: _struct_pb2.Value
    idempotency_key: str
    origin: str
    def __init__(self, text: _Optional[str] = ..., intent_name: _Optional[str] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., variables: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., token_usage: _Optional[_Union[_chat_pb2.ReportedUsage, _Mapping]] = ..., wait_token: _Optional[str] = ..., input: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., origin: _Optional[str] = ...) -> None: ...

class Block(_message.Message):
    __slots__ = ("type", "id", "payload", "meta")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    type: str
    id: str
    payload: _struct_pb2.Struct
    meta: _struct_pb2.Struct
    def __init__(self, type: _Optional[str] = ..., id: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., meta: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class FlowReply(_message.Message):
    __slots__ = ("execution_id", "conversation_id", "blocks", "expected_input", "wait_token", "wait_expires_at", "token_usage", "status")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_INPUT_FIELD_NUMBER: _ClassVar[int]
    WAIT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WAIT_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_USAGE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    conversation_id: str
    blocks: _containers.RepeatedCompositeFieldContainer[Block]
    expected_input: _struct_pb2.Struct
    wait_token: str
    wait_expires_at: _timestamp_pb2.Timestamp
    token_usage: _events_pb2.Usage
    status: ExecutionStatus
    def __init__(self, execution_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., blocks: _Optional[_Iterable[_Union[Block, _Mapping]]] = ..., expected_input: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., wait_token: _Optional[str] = ..., wait_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., token_usage: _Optional[_Union[_events_pb2.Usage, _Mapping]] = ..., status: _Optional[_Union[ExecutionStatus, str]] = ...) -> None: ...

class SendMessageResponse(_message.Message):
    __slots__ = ("reply",)
    REPLY_FIELD_NUMBER: _ClassVar[int]
    reply: FlowReply
    def __init__(self, reply: _Optional[_Union[FlowReply, _Mapping]] = ...) -> None: ...

class GetExecutionRequest(_message.Message):
    __slots__ = ("execution_id",)
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    def __init__(self, execution_id: _Optional[str] = ...) -> None: ...

class Execution(_message.Message):
    __slots__ = ("id", "conversation_id", "agent_id", "intent_name", "status", "current_step", "expected_input", "wait_expires_at", "steps_run", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    INTENT_NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEP_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_INPUT_FIELD_NUMBER: _ClassVar[int]
    WAIT_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    STEPS_RUN_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    conversation_id: str
    agent_id: str
    intent_name: str
    status: ExecutionStatus
    current_step: str
    expected_input: _struct_pb2.Struct
    wait_expires_at: _timestamp_pb2.Timestamp
    steps_run: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., intent_name: _Optional[str] = ..., status: _Optional[_Union[ExecutionStatus, str]] = ..., current_step: _Optional[str] = ..., expected_input: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., wait_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., steps_run: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetExecutionResponse(_message.Message):
    __slots__ = ("execution",)
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    execution: Execution
    def __init__(self, execution: _Optional[_Union[Execution, _Mapping]] = ...) -> None: ...
