"""Request-level rules of the flow surface: variables, text, context and reported usage.

Every violation is collected (not just the first) and reported as one INVALID_ARGUMENT
with reason `invalid_input`; `details["violations"]` lists `{field, code, message}` per
offending key, which the REST dialect renders as a 422 `validation_failed`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from core import limits as core_limits
from core.errors import Code, Reason, SwitchboardError
from core.flows import limits

VARIABLE_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# The REST surface carries the idempotency key as a header; violations name it so.
IDEMPOTENCY_FIELD = "Idempotency-Key"


@dataclass(frozen=True, slots=True)
class Violation:
    field: str
    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


def compact_json_bytes(value: Any) -> int:
    """Size of `value` as compact UTF-8 JSON (the spec's "bytes when JSON-encoded")."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return len(text.encode("utf-8"))


def normalize_numbers(value: Any) -> Any:
    """Integral floats back to ints. protobuf Struct carries every number as a double, so
    `129` sent by a REST client arrives as `129.0`; this restores what the client wrote."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, list):
        return [normalize_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: normalize_numbers(v) for k, v in value.items()}
    return value


def _array_depth(value: Any) -> int:
    if not isinstance(value, list):
        return 0
    return 1 + max((_array_depth(v) for v in value), default=0)


def _contains_object(value: Any) -> bool:
    if isinstance(value, dict):
        return True
    if isinstance(value, list):
        return any(_contains_object(v) for v in value)
    return False


def check_variables(variables: dict[str, Any]) -> list[Violation]:
    """The spec's variable rules; an empty list means the variables are accepted."""
    found: list[Violation] = []
    if len(variables) > limits.MAX_VARIABLES:
        found.append(Violation(
            "variables", "too_many_keys",
            f"at most {limits.MAX_VARIABLES} keys (got {len(variables)})",
        ))
    size = compact_json_bytes(variables)
    if size > limits.MAX_VARIABLES_JSON_BYTES:
        found.append(Violation(
            "variables", "too_large",
            f"at most {limits.MAX_VARIABLES_JSON_BYTES} bytes as compact JSON (got {size})",
        ))
    for key, value in variables.items():
        name = f"variables.{key}"
        if not VARIABLE_KEY.fullmatch(key):
            found.append(Violation(name, "invalid_key",
                                   "keys must match ^[a-z][a-z0-9_]{0,63}$"))
        if _contains_object(value):
            found.append(Violation(name, "object_value",
                                   "values must be scalars, null or arrays; objects are rejected"))
        elif _array_depth(value) > limits.MAX_VARIABLE_DEPTH:
            found.append(Violation(
                name, "too_deep",
                f"arrays may be nested at most {limits.MAX_VARIABLE_DEPTH} levels deep",
            ))
    return found


def check_text(text: str, *, required: bool) -> list[Violation]:
    if required and not text:
        return [Violation("text", "required", "text is required (1 to 4000 characters)")]
    if len(text) > limits.MAX_TEXT_CHARS:
        return [Violation("text", "too_long",
                          f"text must be at most {limits.MAX_TEXT_CHARS} characters")]
    return []


def check_intent(intent_name: str, *, required: bool) -> list[Violation]:
    """A new execution names its intent (which one exists is checked when it starts)."""
    if required and not intent_name:
        return [Violation("intentName", "required",
                          "intentName is required to start an execution")]
    return []


def check_idempotency_key(key: str) -> list[Violation]:
    """The `Idempotency-Key` header: the same limit as for chat turns."""
    if len(key) > core_limits.MAX_IDEMPOTENCY_KEY_CHARS:
        return [Violation(IDEMPOTENCY_FIELD, "too_long",
                          f"{IDEMPOTENCY_FIELD} must be at most "
                          f"{core_limits.MAX_IDEMPOTENCY_KEY_CHARS} characters")]
    return []


def check_context(context: dict[str, Any]) -> list[Violation]:
    if compact_json_bytes(context) > limits.MAX_CONTEXT_JSON_BYTES:
        return [Violation("context", "too_large",
                          f"at most {limits.MAX_CONTEXT_JSON_BYTES} bytes as compact JSON")]
    return []


def check_usage(prompt: int, completion: int, total: int, model: str) -> list[Violation]:
    found = []
    for name, count in (("prompt_tokens", prompt), ("completion_tokens", completion),
                        ("total_tokens", total)):
        if count < 0 or count > limits.MAX_REPORTED_TOKENS:
            found.append(Violation(f"tokenUsage.{name}", "out_of_range",
                                   f"must be between 0 and {limits.MAX_REPORTED_TOKENS}"))
    if total and total != prompt + completion:
        found.append(Violation("tokenUsage.total_tokens", "mismatch",
                               "must equal prompt_tokens + completion_tokens"))
    if len(model) > limits.MAX_MODEL_NAME_CHARS:
        found.append(Violation("tokenUsage.model", "too_long",
                               f"at most {limits.MAX_MODEL_NAME_CHARS} characters"))
    return found


def raise_if_any(violations: list[Violation]) -> None:
    if not violations:
        return
    fields = ", ".join(dict.fromkeys(v.field for v in violations))
    raise SwitchboardError(
        Code.INVALID_ARGUMENT, Reason.INVALID_INPUT, f"Invalid request: {fields}.",
        {"field": violations[0].field},
        details={"violations": [v.to_json() for v in violations]},
    )
