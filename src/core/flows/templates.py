"""`{{name}}` templates, filled safely.

- One pass: a value is substituted once and never re-expanded, so a user who types
  `{{secret}}` gets those characters back, not the variable.
- Blocks are plain text (`meta.format = "plain"`): clients must show them as text, never
  as HTML or Markdown; values are not HTML-escaped (that would corrupt `&` and `<` for the
  many clients that render text correctly). See docs/flow.md.
- Names are dotted paths into the scope (`order.status`, `variables.cart_total`,
  `context.page_url`, `input`); list items by index (`order.items.0.name`). A missing name
  renders as an empty string.
- A template that is exactly one placeholder (`"{{order.items}}"`) keeps the value's type
  when filling structured payloads (`fill_value`).
"""

from __future__ import annotations

import json
import re
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*\}\}")
_MISSING = object()


def lookup(scope: dict[str, Any], path: str) -> Any:
    """The value at a dotted path, or None."""
    value: Any = scope
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            value = _MISSING
        if value is _MISSING:
            return None
    return value


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ", ".join(as_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def render(template: str, scope: dict[str, Any]) -> str:
    """Fill every placeholder in one pass (re.sub never rescans replacements)."""
    return PLACEHOLDER.sub(lambda m: as_text(lookup(scope, m.group(1))), template)


def placeholders(template: str) -> list[str]:
    return [m.group(1) for m in PLACEHOLDER.finditer(template)]


def fill_value(value: Any, scope: dict[str, Any]) -> Any:
    """Fill templates inside a structured value (block payloads, tool arguments)."""
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value.strip())
        if whole is not None:
            return lookup(scope, whole.group(1))
        return render(value, scope)
    if isinstance(value, list):
        return [fill_value(v, scope) for v in value]
    if isinstance(value, dict):
        return {str(k): fill_value(v, scope) for k, v in value.items()}
    return value
