"""Exactly-once flow messages.

A flow message with an idempotency key runs once: the reply is stored under
(organisation, key) with a digest of the request, and a later message with the same key
and request gets the stored reply back (so the REST body is byte-identical); the same key
with a different request is ABORTED `idempotency_mismatch`. Keys are kept for
`IDEMPOTENCY_WINDOW_S`, like chat turns' keys.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from datetime import datetime
from typing import Any

from core.events import Usage
from core.flows.messages import FlowMessage, FlowReply
from core.flows.runner import Block


def message_hash(conversation_id: str, message: FlowMessage) -> str:
    data = asdict(message)
    data.pop("idempotency_key", None)
    data["conversation_id"] = conversation_id
    raw = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


def reply_to_json(reply: FlowReply) -> str:
    data: dict[str, Any] = asdict(reply)
    data["wait_expires_at"] = reply.wait_expires_at.isoformat() if reply.wait_expires_at else None
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def reply_from_json(text: str) -> FlowReply:
    data = json.loads(text)
    expires = data.pop("wait_expires_at")
    return FlowReply(
        **{k: v for k, v in data.items() if k not in ("blocks", "usage")},
        blocks=tuple(Block(**b) for b in data["blocks"]),
        usage=Usage(**data["usage"]),
        wait_expires_at=datetime.fromisoformat(expires) if expires else None,
    )
