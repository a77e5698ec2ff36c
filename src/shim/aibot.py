"""The aibot send-message dialect: `POST /v1/aibot/bots/{AgentId}/send-message`.

The contract (the public aibot send-message API) and our choices where it is silent:
docs/aibot.md.
Request `{"messages", "tools", "resume", "conversationId"}` with `Authorization: Bearer`.
Reply: Server-Sent Events of typed JSON objects (`text`, `tool-call-start`,
`tool-call-args`, `tool-call-end`, `tool-result`), then `data: [DONE]`; with
`Accept: application/json` (and not `text/event-stream`), one JSON object folding the
same events. Client tools end the stream with the documented extension event
`{"type": "interrupt", ...}` then `[DONE]`; `resume` continues the turn.

The module only parses, projects the core's events and maps errors: every rule (client
tool schemas, interrupt expiry, double resume, ...) is the core's.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC
from typing import Any, Final

from aiohttp import web
from google.protobuf import struct_pb2

from core.ids import canonical_conversation_id
from shim import cors, dialect_openapi, openapi, status_map
from shim.common import (
    BadRequest,
    CoreCallError,
    TurnStream,
    read_json_object,
    stop_turn,
    stream_chat,
)
from shim.core_client import CoreError
from shim.headers import idempotency_key, origin
from shim.resume import has_last_event_id, last_event_id, relay_resumed, resume_stream
from shim.sse import EventStream, relay
from switchboard.v1 import chat_pb2, events_pb2

PATH: Final = "/v1/aibot/bots/{AgentId}/send-message"
# Reliability extensions (docs/aibot.md, docs/reliability.md).
STOP_PATH: Final = "/v1/aibot/bots/{AgentId}/stop"
STREAM_PATH: Final = "/v1/aibot/bots/{AgentId}/stream"
DIALECT: Final = "aibot"
CONVERSATION_PREFIX: Final = "conversation-"
CONVERSATION_HEADER: Final = "X-Conversation-Id"
DONE: Final = "[DONE]"

# The dialect's error tables are the generic ones (shim.status_map): the spec documents
# no codes of its own beyond the 400/401/404 envelopes, which these tables give.
BY_REASON: Final = status_map.BY_REASON
BY_CODE: Final = status_map.BY_CODE


def status_of(error: CoreError) -> int:
    return status_map.http_status(error.code, error.reason)


def error_body(error: CoreError) -> dict[str, Any]:
    """`{"type": "error", "status", "code", "message"[, "details"]}`: the JSON error body
    and, after the headers went out, the data of the one SSE error event."""
    status = status_of(error)
    body: dict[str, Any] = {
        "type": "error",
        "status": status,
        "code": error.reason or error.code.lower(),
        "message": status_map.public_message(error, status),
    }
    if error.details:
        body["details"] = error.details
    return body


def error_response(error: CoreError) -> web.Response:
    body = error_body(error)
    headers = {}
    if body["status"] in (429, 503) and error.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after_s)))
    return web.json_response(body, status=body["status"], headers=headers)


def render_conversation_id(canonical: str) -> str:
    """`conversation-<uuid>` (the spec's example form); any dialect's rendering is accepted
    back."""
    try:
        return CONVERSATION_PREFIX + str(uuid.UUID(canonical))
    except ValueError:
        return canonical


def _decoded(result_json: str) -> Any:
    """A tool result as JSON data (a JSON string stays a string)."""
    try:
        return json.loads(result_json) if result_json else None
    except ValueError:
        return result_json


def _iso(ts: Any) -> str:
    return str(ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))


# -- request ------------------------------------------------------------------------------


def _content(value: Any, where: str) -> str:
    """A message's content: a string, or a list of `{"type": "text", "text"}` parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(
        isinstance(p, dict) and isinstance(p.get("text"), str) for p in value
    ):
        return "".join(p["text"] for p in value)
    raise BadRequest(f"{where}.content must be a string", field=f"{where}.content")


def _messages(raw: Any) -> tuple[str, list[chat_pb2.HistoryMessage]]:
    """The last user message (the new turn) and the messages before it (history, used when
    the conversation is new)."""
    if raw is None:
        return "", []
    if not isinstance(raw, list):
        raise BadRequest("messages must be an array", field="messages")
    parsed: list[tuple[str, str]] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("role"), str):
            raise BadRequest(f"messages[{i}] must be an object with a role",
                             field=f"messages[{i}]")
        parsed.append((item["role"], _content(item.get("content", ""), f"messages[{i}]")))
    last_user = max((i for i, (role, _) in enumerate(parsed) if role == "user"), default=-1)
    if last_user < 0:
        return "", []
    history = [chat_pb2.HistoryMessage(role=r, content=c) for r, c in parsed[:last_user]]
    return parsed[last_user][1], history


def _tools(raw: Any) -> list[chat_pb2.ToolDefinition]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BadRequest("tools must be an array", reason="invalid_tools", field="tools")
    tools = []
    for i, item in enumerate(raw):
        where = f"tools[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest(f"{where} must be an object with a name", reason="invalid_tools",
                             field=where)
        description = item.get("description") or ""
        parameters = item.get("parameters") or {}
        if not isinstance(description, str):
            raise BadRequest(f"{where}.description must be a string", reason="invalid_tools",
                             field=where)
        if not isinstance(parameters, dict):
            raise BadRequest(f"{where}.parameters must be a JSON Schema object",
                             reason="invalid_tools", field=where)
        schema = struct_pb2.Struct()
        schema.update(parameters)
        tools.append(chat_pb2.ToolDefinition(name=item["name"], description=description,
                                             parameters=schema))
    return tools


def _resume(raw: Any) -> chat_pb2.ResumeInput | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("interruptId"), str):
        raise BadRequest("resume must be an object with an interruptId", field="resume")
    payload = raw.get("payload")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise BadRequest("resume.payload must be an object mapping each toolCallId to its "
                         "result", field="resume.payload")
    return chat_pb2.ResumeInput(
        interrupt_id=raw["interruptId"],
        results=[
            chat_pb2.ToolResultInput(
                tool_call_id=str(call_id), result_json=json.dumps(result, ensure_ascii=False)
            )
            for call_id, result in payload.items()
        ],
    )


def parse(body: dict[str, Any], agent: str, origin: str) -> chat_pb2.TurnInput:
    conversation_id = body.get("conversationId")
    if conversation_id is None:
        conversation_id = ""
    elif not isinstance(conversation_id, str):
        raise BadRequest("conversationId must be a string", field="conversationId")
    turn = chat_pb2.TurnInput(
        agent=agent, conversation_id=conversation_id, dialect=DIALECT, origin=origin,
        client_tools=_tools(body.get("tools")),
    )
    resume = _resume(body.get("resume"))
    if resume is not None:
        turn.resume.CopyFrom(resume)  # `messages` are not read on a resume
    else:
        message, history = _messages(body.get("messages"))
        turn.message = message
        turn.history.extend(history)
    return turn


def wants_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "").lower()
    return "application/json" in accept and "text/event-stream" not in accept


# -- events -------------------------------------------------------------------------------


def event_data(event: events_pb2.ChatEvent) -> dict[str, Any] | None:
    """The dialect's JSON object for a core event (None: not part of this dialect). Keys in
    the spec's order."""
    kind = event.WhichOneof("kind")
    if kind == "text_delta":
        if not event.text_delta.text:
            return None
        return {"type": "text", "content": event.text_delta.text}
    if kind == "tool_call_start":
        s = event.tool_call_start
        return {"type": "tool-call-start", "toolCallId": s.tool_call_id,
                "toolCallName": s.tool_name}
    if kind == "tool_call_args":
        a = event.tool_call_args
        return {"type": "tool-call-args", "toolCallId": a.tool_call_id, "delta": a.delta}
    if kind == "tool_call_end":
        return {"type": "tool-call-end", "toolCallId": event.tool_call_end.tool_call_id}
    if kind == "tool_result":
        r = event.tool_result
        return {"type": "tool-result", "result": _decoded(r.result_json),
                "toolCallId": r.tool_call_id}
    if kind == "interrupt":
        i = event.interrupt
        return {"type": "interrupt", "interruptId": i.interrupt_id,
                "toolCallIds": list(i.tool_call_ids), "expiresAt": _iso(i.expires_at)}
    return None


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)


async def _send_error(stream: EventStream, error: CoreError, seq: int) -> None:
    await stream.send(_dumps(error_body(error)), event_id=seq)


# Sent before `[DONE]` when an explicit stop ended the turn (an extension event, like
# `interrupt`).
STOPPED: Final = {"type": "stopped"}


async def _render(stream: EventStream, event: events_pb2.ChatEvent) -> bool:
    kind = event.WhichOneof("kind")
    if kind == "error":
        e = event.error
        await _send_error(stream, CoreError(e.code, e.reason, e.message), event.seq)
        return True
    terminal = kind in ("completed", "interrupt")
    data = event_data(event)
    if kind == "completed" and event.completed.status == events_pb2.TURN_STATUS_STOPPED:
        data = STOPPED
    if data is not None:
        # A terminal event renders as two frames; only the last carries its id, so a
        # client's Last-Event-ID passes the event once all of it arrived (shim.resume).
        await stream.send(_dumps(data), event_id=None if terminal else event.seq)
    if terminal:
        await stream.send(DONE, event_id=event.seq)
        return True
    return False


class Fold:
    """The `Accept: application/json` reply: the stream's events folded into one object."""

    def __init__(self, conversation_id: str) -> None:
        self.conversation_id = conversation_id
        self.content: list[str] = []
        self.calls: dict[str, dict[str, Any]] = {}
        self.args: dict[str, list[str]] = {}
        self.interrupt: dict[str, Any] | None = None

    def add(self, event: events_pb2.ChatEvent) -> None:
        data = event_data(event)
        if data is None:
            return
        kind = data["type"]
        if kind == "text":
            self.content.append(data["content"])
        elif kind == "tool-call-start":
            self.calls[data["toolCallId"]] = {"toolCallId": data["toolCallId"],
                                              "toolCallName": data["toolCallName"]}
            self.args[data["toolCallId"]] = []
        elif kind == "tool-call-args":
            self.args.setdefault(data["toolCallId"], []).append(data["delta"])
        elif kind == "tool-result":
            call = self.calls.setdefault(data["toolCallId"], {"toolCallId": data["toolCallId"]})
            call["result"] = data["result"]
        elif kind == "interrupt":
            self.interrupt = {k: v for k, v in data.items() if k != "type"}

    def body(self) -> dict[str, Any]:
        calls = []
        for call_id, call in self.calls.items():
            raw = "".join(self.args.get(call_id, []))
            out = dict(call)
            if call_id in self.args:
                out["arguments"] = _decoded(raw) if raw else {}
            calls.append(out)
        return {
            "conversationId": render_conversation_id(self.conversation_id),
            "content": "".join(self.content),
            "toolCalls": calls,
            "interrupt": self.interrupt,
        }


# -- handler ------------------------------------------------------------------------------


async def send_message(request: web.Request) -> web.StreamResponse:
    try:
        turn = parse(await read_json_object(request, large=True), request.match_info["AgentId"],
                     origin(request))
        turn.idempotency_key = idempotency_key(request)
    except BadRequest as exc:
        return error_response(exc.as_core_error())
    if turn.conversation_id and has_last_event_id(request):
        # A reconnect (e.g. fetch-event-source retrying its POST): resume, send nothing.
        return await _reconnect(request, turn.conversation_id)
    call = stream_chat(request, turn)
    try:
        first = await call.first()
    except CoreCallError as exc:
        call.close()
        return error_response(exc.error)
    headers = {CONVERSATION_HEADER: render_conversation_id(first.conversation_id)}
    if wants_json(request):
        return await _fold(call, first, headers)
    return await relay(request, call, first, _render, _send_error, headers)


async def _fold(call: TurnStream, first: events_pb2.ChatEvent,
                headers: dict[str, str]) -> web.Response:
    fold = Fold(first.conversation_id)
    fold.add(first)
    try:
        async for event in call.events():
            if event.WhichOneof("kind") == "error":
                e = event.error
                return error_response(CoreError(e.code, e.reason, e.message))
            fold.add(event)
            if event.WhichOneof("kind") in ("completed", "interrupt"):
                break
    except CoreCallError as exc:
        return error_response(exc.error)
    finally:
        call.close()
    return web.json_response(fold.body(), headers=headers)


async def _reconnect(request: web.Request, conversation_id: str) -> web.StreamResponse:
    """Replay what the client missed after its `Last-Event-ID`, then follow the live turn
    to its end (docs/aibot.md, "Resuming a stream")."""
    try:
        after_seq = last_event_id(request)
    except BadRequest as exc:
        return error_response(exc.as_core_error())
    call = resume_stream(request, conversation_id, after_seq, DIALECT)
    try:
        return await relay_resumed(
            request, call, _render, _send_error,
            lambda first: {CONVERSATION_HEADER: render_conversation_id(first.conversation_id)},
        )
    except CoreCallError as exc:
        return error_response(exc.error)


async def resume(request: web.Request) -> web.StreamResponse:
    """`GET /v1/aibot/bots/{AgentId}/stream?conversationId=...[&lastEventId=N]`."""
    conversation_id = request.query.get("conversationId", "")
    if not conversation_id:
        return error_response(BadRequest("conversationId is required",
                                         field="conversationId").as_core_error())
    return await _reconnect(request, conversation_id)


async def stop(request: web.Request) -> web.Response:
    """`POST /v1/aibot/bots/{AgentId}/stop` `{"conversationId"}`: stop the running turn;
    its stream ends with `{"type": "stopped"}` then `[DONE]`."""
    try:
        body = await read_json_object(request)
        conversation_id = body.get("conversationId")
        if not isinstance(conversation_id, str) or not conversation_id:
            raise BadRequest("conversationId is required", field="conversationId")
        reply = await stop_turn(request, conversation_id, DIALECT)
    except BadRequest as exc:
        return error_response(exc.as_core_error())
    except CoreCallError as exc:
        return error_response(exc.error)
    canonical = canonical_conversation_id(conversation_id) or conversation_id
    return web.json_response({"stopped": reply.stopped,
                              "conversationId": render_conversation_id(canonical)})


def setup(app: web.Application) -> None:
    openapi.add_paths(app, dialect_openapi.AIBOT_PATHS, dialect_openapi.AIBOT_COMPONENTS)
    app.router.add_post(PATH, send_message)
    app.router.add_post(STOP_PATH, stop)
    app.router.add_get(STREAM_PATH, resume)
    cors.allow(app, PATH, expose=(CONVERSATION_HEADER,))
    cors.allow(app, STOP_PATH)
    cors.allow(app, STREAM_PATH, methods=("GET",), expose=(CONVERSATION_HEADER,))
