"""`GET /api/sdk/chat/history`: a session's transcript for the widget after a page reload.

A publishable key may read it because the core's admission decides, exactly as for a
send: the browser Origin, the key kind and the conversation's owner (a visitor reads only
their own conversation; anything else is the same 404 as an unknown id). The shim only
translates ListMessages into the Halo JSON shape documented in docs/halo.md.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

import grpc
from aiohttp import web

from core.ids import canonical_conversation_id
from shim.app import CORE
from shim.common import BadRequest, CoreCallError, call_metadata, origin_of
from shim.core_client import decode_error
from shim.halo_errors import error_response
from shim.halo_wire import action_json, session_id
from switchboard.v1 import chat_pb2

HISTORY_PATH = "/api/sdk/chat/history"
# What a widget shows of a conversation: its visitor's, its agent's and its operators'
# words (a person who took it over: docs/handoff.md). Tool messages are the agent's
# working notes, not part of what the visitor saw.
SHOWN_ROLES = frozenset({"user", "assistant", "operator"})


def _limit(raw: str | None) -> int:
    """The page size; 0 lets the core choose its default. Its maximum is the core's rule
    (`core.limits.LIST_MESSAGES_MAX_PAGE`), so gRPC clients get the same one."""
    if raw is None or raw == "":
        return 0
    if not raw.isascii() or not raw.isdigit() or int(raw) == 0 or len(raw) > 9:
        raise BadRequest("limit must be a positive integer.", field="limit")
    return int(raw)


def _text(fields: Any, name: str) -> str:
    value = fields.get(name)
    return value if isinstance(value, str) else ""


def message_json(message: chat_pb2.Message) -> dict[str, Any]:
    out: dict[str, Any] = {
        "role": message.role,
        "text": message.content,
        "actions": [action_json(a) for a in message.actions],
        "created_at": message.created_at.ToDatetime(tzinfo=UTC).isoformat()
        .replace("+00:00", "Z"),
    }
    if message.role == "operator":
        out["operator_name"] = message.operator_name
    return out


async def history(request: web.Request) -> web.Response:
    """`GET /api/sdk/chat/history?session_id=chat_...&limit=N&page_token=T`: one page of
    the session's messages, oldest first."""
    query = request.query
    try:
        session = _text(query, "session_id")
        if not session:
            raise BadRequest("session_id is required.", field="session_id")
        page_size = _limit(query.get("limit"))
        reply: chat_pb2.ListMessagesResponse = await _list_messages(
            request, chat_pb2.ListMessagesRequest(
                conversation_id=session, page_size=page_size,
                page_token=_text(query, "page_token"), origin=origin_of(request),
                user_id=_text(query, "user_id"), user_token=_text(query, "user_token"),
            ),
        )
    except BadRequest as exc:
        return error_response(exc.as_core_error())
    except CoreCallError as exc:
        return error_response(exc.error)
    return web.json_response({
        "session_id": session_id(canonical_conversation_id(session) or session),
        # A stopped turn that produced no text leaves an empty reply: nothing to show.
        "messages": [message_json(m) for m in reply.messages
                     if m.role in SHOWN_ROLES and m.content],
        "next_page_token": reply.next_page_token or None,
    })


async def _list_messages(request: web.Request,
                         call: chat_pb2.ListMessagesRequest) -> chat_pb2.ListMessagesResponse:
    try:
        reply: chat_pb2.ListMessagesResponse = await request.app[CORE].chat.ListMessages(
            call, metadata=call_metadata(request),
        )
        return reply
    except grpc.aio.AioRpcError as exc:
        raise CoreCallError(decode_error(exc)) from None


__all__ = ["HISTORY_PATH", "SHOWN_ROLES", "history", "message_json"]
