import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from switchboard.v1 import chat_pb2 as _chat_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HandoffState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HANDOFF_STATE_UNSPECIFIED: _ClassVar[HandoffState]
    HANDOFF_STATE_BOT: _ClassVar[HandoffState]
    HANDOFF_STATE_WAITING: _ClassVar[HandoffState]
    HANDOFF_STATE_HUMAN: _ClassVar[HandoffState]
    HANDOFF_STATE_CLOSED: _ClassVar[HandoffState]
HANDOFF_STATE_UNSPECIFIED: HandoffState
HANDOFF_STATE_BOT: HandoffState
HANDOFF_STATE_WAITING: HandoffState
HANDOFF_STATE_HUMAN: HandoffState
HANDOFF_STATE_CLOSED: HandoffState

class Handoff(_message.Message):
    __slots__ = ("conversation_id", "state", "team", "ticket_id", "reason", "operator_id", "operator_name", "updated_at", "requested_at", "user_id", "traits", "context", "agent_id")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_NAME_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    TRAITS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    state: HandoffState
    team: str
    ticket_id: str
    reason: str
    operator_id: str
    operator_name: str
    updated_at: _timestamp_pb2.Timestamp
    requested_at: _timestamp_pb2.Timestamp
    user_id: str
    traits: _struct_pb2.Struct
    context: _struct_pb2.Struct
    agent_id: str
    def __init__(self, conversation_id: _Optional[str] = ..., state: _Optional[_Union[HandoffState, str]] = ..., team: _Optional[str] = ..., ticket_id: _Optional[str] = ..., reason: _Optional[str] = ..., operator_id: _Optional[str] = ..., operator_name: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., requested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., user_id: _Optional[str] = ..., traits: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., agent_id: _Optional[str] = ...) -> None: ...

class Activity(_message.Message):
    __slots__ = ("id", "conversation_id", "kind", "data", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    conversation_id: str
    kind: str
    data: _struct_pb2.Struct
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[int] = ..., conversation_id: _Optional[str] = ..., kind: _Optional[str] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListHandoffsRequest(_message.Message):
    __slots__ = ("states", "operator_name")
    STATES_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_NAME_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[HandoffState]
    operator_name: str
    def __init__(self, states: _Optional[_Iterable[_Union[HandoffState, str]]] = ..., operator_name: _Optional[str] = ...) -> None: ...

class ListHandoffsResponse(_message.Message):
    __slots__ = ("handoffs",)
    HANDOFFS_FIELD_NUMBER: _ClassVar[int]
    handoffs: _containers.RepeatedCompositeFieldContainer[Handoff]
    def __init__(self, handoffs: _Optional[_Iterable[_Union[Handoff, _Mapping]]] = ...) -> None: ...

class GetHandoffRequest(_message.Message):
    __slots__ = ("conversation_id", "operator_name")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_NAME_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    operator_name: str
    def __init__(self, conversation_id: _Optional[str] = ..., operator_name: _Optional[str] = ...) -> None: ...

class GetHandoffResponse(_message.Message):
    __slots__ = ("handoff", "messages")
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    handoff: Handoff
    messages: _containers.RepeatedCompositeFieldContainer[_chat_pb2.Message]
    def __init__(self, handoff: _Optional[_Union[Handoff, _Mapping]] = ..., messages: _Optional[_Iterable[_Union[_chat_pb2.Message, _Mapping]]] = ...) -> None: ...

class WatchHandoffsRequest(_message.Message):
    __slots__ = ("after_id", "operator_name")
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_NAME_FIELD_NUMBER: _ClassVar[int]
    after_id: int
    operator_name: str
    def __init__(self, after_id: _Optional[int] = ..., operator_name: _Optional[str] = ...) -> None: ...

class WatchHandoffsResponse(_message.Message):
    __slots__ = ("activity",)
    ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    activity: Activity
    def __init__(self, activity: _Optional[_Union[Activity, _Mapping]] = ...) -> None: ...

class RequestHandoffRequest(_message.Message):
    __slots__ = ("conversation_id", "team", "reason", "operator_name")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_NAME_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    team: str
    reason: str
    operator_name: str
    def __init__(self, conversation_id: _Optional[str] = ..., team: _Optional[str] = ..., reason: _Optional[str] = ..., operator_name: _Optional[str] = ...) -> None: ...

class RequestHandoffResponse(_message.Message):
    __slots__ = ("handoff",)
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    handoff: Handoff
    def __init__(self, handoff: _Optional[_Union[Handoff, _Mapping]] = ...) -> None: ...

class ClaimHandoffRequest(_message.Message):
    __slots__ = ("conversation_id", "operator_name")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_NAME_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    operator_name: str
    def __init__(self, conversation_id: _Optional[str] = ..., operator_name: _Optional[str] = ...) -> None: ...

class ClaimHandoffResponse(_message.Message):
    __slots__ = ("handoff",)
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    handoff: Handoff
    def __init__(self, handoff: _Optional[_Union[Handoff, _Mapping]] = ...) -> None: ...

class SendOperatorMessageRequest(_message.Message):
    __slots__ = ("conversation_id", "text", "operator_name")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_NAME_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    text: str
    operator_name: str
    def __init__(self, conversation_id: _Optional[str] = ..., text: _Optional[str] = ..., operator_name: _Optional[str] = ...) -> None: ...

class SendOperatorMessageResponse(_message.Message):
    __slots__ = ("message", "activity_id")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ACTIVITY_ID_FIELD_NUMBER: _ClassVar[int]
    message: _chat_pb2.Message
    activity_id: int
    def __init__(self, message: _Optional[_Union[_chat_pb2.Message, _Mapping]] = ..., activity_id: _Optional[int] = ...) -> None: ...

class ReleaseHandoffRequest(_message.Message):
    __slots__ = ("conversation_id", "operator_name")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_NAME_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    operator_name: str
    def __init__(self, conversation_id: _Optional[str] = ..., operator_name: _Optional[str] = ...) -> None: ...

class ReleaseHandoffResponse(_message.Message):
    __slots__ = ("handoff",)
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    handoff: Handoff
    def __init__(self, handoff: _Optional[_Union[Handoff, _Mapping]] = ...) -> None: ...

class CloseHandoffRequest(_message.Message):
    __slots__ = ("conversation_id", "operator_name")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_NAME_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    operator_name: str
    def __init__(self, conversation_id: _Optional[str] = ..., operator_name: _Optional[str] = ...) -> None: ...

class CloseHandoffResponse(_message.Message):
    __slots__ = ("handoff",)
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    handoff: Handoff
    def __init__(self, handoff: _Optional[_Union[Handoff, _Mapping]] = ...) -> None: ...

class ListenConversationRequest(_message.Message):
    __slots__ = ("conversation_id", "after_id", "origin", "user_id", "user_token")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    after_id: int
    origin: str
    user_id: str
    user_token: str
    def __init__(self, conversation_id: _Optional[str] = ..., after_id: _Optional[int] = ..., origin: _Optional[str] = ..., user_id: _Optional[str] = ..., user_token: _Optional[str] = ...) -> None: ...

class ListenConversationResponse(_message.Message):
    __slots__ = ("activity",)
    ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    activity: Activity
    def __init__(self, activity: _Optional[_Union[Activity, _Mapping]] = ...) -> None: ...
