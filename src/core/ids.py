"""Conversation ids: one canonical UUID, rendered per dialect, accepted in any rendering."""

from __future__ import annotations

import uuid

# Prefixes the dialects render ids with; any of them (or none) is accepted everywhere.
KNOWN_PREFIXES = ("chat_", "conv_", "conversation-", "conversation_")


def canonical_conversation_id(text: str) -> str | None:
    """The canonical UUID of any dialect's rendering, or None if it is not one of ours."""
    text = text.strip()
    for prefix in KNOWN_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None
