"""Expected inputs (what an `ask` step accepts) and the check of a user's answer.

Kinds: `text` (min_length, max_length, pattern), `choice` (options: value and label; the
answer may name either, case-insensitively, and is stored as the value), `number` (min,
max, integer; a JSON number or a numeric string) and `email`.
"""

from __future__ import annotations

import re
from typing import Any

from core.errors import Code, Reason, SwitchboardError
from core.flows import limits

INPUT_KINDS = ("text", "choice", "number", "email")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_EMAIL_CHARS = 254


class InputMismatch(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def normalize_expected(spec: dict[str, Any]) -> dict[str, Any]:
    """The expected-input mapping as clients see it (options as {value, label})."""
    out: dict[str, Any] = {"kind": spec.get("kind", "text")}
    if out["kind"] == "choice":
        options = []
        for option in spec.get("options", []):
            if isinstance(option, dict):
                value = str(option.get("value", option.get("label", "")))
                options.append({"value": value, "label": str(option.get("label", value))})
            else:
                options.append({"value": str(option), "label": str(option)})
        out["options"] = options
    for key in ("min_length", "max_length", "pattern", "min", "max", "integer"):
        if key in spec:
            out[key] = spec[key]
    return out


def _as_number(answer: Any) -> float | int:
    if isinstance(answer, bool):
        raise InputMismatch("expected a number")
    if isinstance(answer, int | float):
        return answer
    if isinstance(answer, str):
        text = answer.strip().replace(",", "")
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            raise InputMismatch("expected a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise InputMismatch("expected a finite number")
        return number
    raise InputMismatch("expected a number")


def check_answer(expected: dict[str, Any], answer: Any) -> Any:
    """The accepted value of `answer`, or InputMismatch saying why not."""
    kind = expected.get("kind", "text")
    if kind == "number":
        number = _as_number(answer)
        if isinstance(number, float) and number.is_integer():
            number = int(number)
        if expected.get("integer") and not isinstance(number, int):
            raise InputMismatch("expected a whole number")
        if "min" in expected and number < expected["min"]:
            raise InputMismatch(f"must be at least {expected['min']}")
        if "max" in expected and number > expected["max"]:
            raise InputMismatch(f"must be at most {expected['max']}")
        return number
    if not isinstance(answer, str):
        raise InputMismatch(f"expected a string for a {kind} input")
    text = answer.strip()
    if len(text) > limits.MAX_INPUT_CHARS:
        raise InputMismatch(f"must be at most {limits.MAX_INPUT_CHARS} characters")
    if kind == "choice":
        for option in expected.get("options", []):
            if text.lower() in (option["value"].lower(), option["label"].lower()):
                return option["value"]
        raise InputMismatch("must be one of the options")
    if kind == "email":
        if len(text) > MAX_EMAIL_CHARS or not EMAIL.match(text):
            raise InputMismatch("expected an email address")
        return text
    if not text:
        raise InputMismatch("an answer is required")
    if len(text) < int(expected.get("min_length", 1)):
        raise InputMismatch(f"must be at least {expected['min_length']} characters")
    if "max_length" in expected and len(text) > int(expected["max_length"]):
        raise InputMismatch(f"must be at most {expected['max_length']} characters")
    pattern = expected.get("pattern")
    if pattern and re.fullmatch(str(pattern), text) is None:
        raise InputMismatch("does not have the expected format")
    return text


def mismatch_error(expected: dict[str, Any], why: str) -> SwitchboardError:
    return SwitchboardError(
        Code.INVALID_ARGUMENT, Reason.INPUT_MISMATCH,
        f"The input does not match what the flow expects: {why}.",
        details={"expected_input": expected, "violation": why},
    )
