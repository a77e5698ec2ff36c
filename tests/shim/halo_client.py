"""Helpers shared by the Halo dialect tests: requests, stream parsing, transcript reads."""

from __future__ import annotations

import io
import json
import re
import time
import warnings
from typing import Any

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from core.demo.seed import DEMO_IDENTITY_SECRET
from harness import SECRET, WIDGET, Harness, auth
from switchboard.v1 import chat_pb2

CHAT = "/api/sdk/chat"
STREAM = "/api/sdk/chat/stream"
RECORD = re.compile("\x1e__ACTION(S)?__(.*?)\x1e", re.DOTALL)

SPEC_CURL_BODY: dict[str, Any] = {
    "user_id": "user_123",
    "message": "Why is my Google Ads integration not working?",
    "context": {
        "integrations": {
            "label": "Connected Integrations",
            "type": "integration",
            "value": {
                "google_ads": {"connected": True, "status": "error", "error": "Token expired"}
            },
        }
    },
}


def headers(key: str = WIDGET, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


def json_body(body: Any) -> io.BytesIO:
    """A JSON request body as a file object (aiohttp warns about large raw bodies)."""
    return io.BytesIO(json.dumps(body).encode("utf-8"))


async def post(sb: Harness, body: Any, key: str = WIDGET, path: str = CHAT,
               **extra: str) -> tuple[int, Any]:
    """POST a JSON body; returns (status, parsed JSON or text)."""
    async with sb.http.post(path, data=json_body(body), headers=headers(
        key, **{"Content-Type": "application/json", **extra}
    )) as resp:
        if resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, await resp.text()


def parse_stream(raw: str) -> tuple[str, list[Any], list[Any] | None]:
    """(text with records stripped, per-action records, final actions record)."""
    actions: list[Any] = []
    final: list[Any] | None = None
    for match in RECORD.finditer(raw):
        if match.group(1):
            final = json.loads(match.group(2))
        else:
            actions.append(json.loads(match.group(2)))
    return RECORD.sub("", raw), actions, final


async def stream(sb: Harness, body: Any, key: str = WIDGET,
                 **extra: str) -> tuple[int, dict[str, str], str]:
    async with sb.http.post(STREAM, data=json_body(body), headers=headers(
        key, **{"Content-Type": "application/json", **extra}
    )) as resp:
        return resp.status, dict(resp.headers), await resp.text()


def token(user_id: str = "user_123", *, secret: str = DEMO_IDENTITY_SECRET,
          algorithm: str = "HS256", exp_in: float | None = 300, **claims: Any) -> str:
    payload: dict[str, Any] = {"user_id": user_id, **claims}
    if exp_in is not None:
        payload["exp"] = int(time.time() + exp_in)
    with warnings.catch_warnings():
        # Tests sign with deliberately unsuitable keys (HS512 with a 43-byte secret).
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(payload, secret, algorithm=algorithm)


async def messages(sb: Harness, session_id: str) -> list[chat_pb2.Message]:
    listed = await sb.chat.ListMessages(
        chat_pb2.ListMessagesRequest(conversation_id=session_id), metadata=auth(SECRET)
    )
    return list(listed.messages)
