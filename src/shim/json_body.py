"""Parsing a JSON request body into data the core can carry.

`json.loads` accepts more than protobuf can hold: `NaN` and `Infinity`, numbers beyond a
double (`1e400`, 400-digit integers), lone UTF-16 surrogates (`"\\ud800"`, or their UTF-8
bytes), and nesting deep enough to exhaust the parser's stack or protobuf's depth limit.
Each of those would fail later, while building or sending the request, as a 500; here they
are an `InvalidBody` (a 400 in every dialect) before any dialect code sees the data.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from itertools import compress
from typing import Any, NoReturn

from core.limits import MAX_JSON_DEPTH, MAX_JSON_VALUES

NOT_JSON = "Request body is not valid JSON."
BAD_NUMBER = ("Request body is not valid JSON: numbers must be finite and fit a double "
              "(NaN, Infinity and values such as 1e400 cannot be carried).")
TOO_DEEP = f"Request body is nested too deeply (at most {MAX_JSON_DEPTH} levels)."
BAD_UNICODE = "Request body contains invalid Unicode (a lone surrogate)."
TOO_MANY = f"Request body holds too many JSON values (at most {MAX_JSON_VALUES:,})."

_MAX_DOUBLE = sys.float_info.max


class InvalidBody(ValueError):
    """The body is not JSON the core can carry; the message says why (client-safe), the
    reason is the core reason it is reported as (too many values is a size problem)."""

    def __init__(self, message: str, reason: str = "invalid_argument") -> None:
        super().__init__(message)
        self.reason = reason


def _reject_constant(name: str) -> NoReturn:
    raise InvalidBody(BAD_NUMBER)


def loads(raw: bytes) -> Any:
    """`raw` as JSON data; raises InvalidBody."""
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except InvalidBody:
        raise
    except RecursionError:
        raise InvalidBody(TOO_DEEP) from None
    except (ValueError, UnicodeDecodeError):
        raise InvalidBody(NOT_JSON) from None
    problem = _problem(data)
    if problem:
        raise InvalidBody(problem, "payload_too_large" if problem == TOO_MANY else
                          "invalid_argument")
    return data


def _problem(data: Any) -> str:
    """Why parsed JSON cannot be carried to the core ("" if it can). Breadth-first, one
    level of nesting at a time, each level's values checked with C-level passes (`map`,
    `compress`): a body may hold millions of them."""
    level = [data] if type(data) in (dict, list) else []
    depth = count = 0
    while level:
        depth += 1
        if depth > MAX_JSON_DEPTH:
            return TOO_DEEP
        values: list[Any] = []
        strings: list[str] = []
        for container in level:
            if type(container) is dict:
                strings.extend(container)  # its keys
                values.extend(container.values())
            else:
                values.extend(container)
        count += len(values)
        if count > MAX_JSON_VALUES:
            return TOO_MANY
        types = list(map(type, values))
        kinds = set(types)
        if float in kinds and not all(map(math.isfinite, _of(float, values, types))):
            return BAD_NUMBER
        if int in kinds:
            ints = list(_of(int, values, types))
            if max(ints) > _MAX_DOUBLE or min(ints) < -_MAX_DOUBLE:  # exact int/float compare
                return BAD_NUMBER
        if str in kinds:
            strings.extend(_of(str, values, types))
        try:
            "".join(strings).encode("utf-8")
        except UnicodeEncodeError:
            return BAD_UNICODE
        level = [*_of(dict, values, types)] if dict in kinds else []
        if list in kinds:
            level.extend(_of(list, values, types))
    return ""


def _of(kind: type, values: list[Any], types: list[type]) -> Iterator[Any]:
    """The values of exactly type `kind` (json.loads makes no subclasses; bools are not
    ints here)."""
    return compress(values, map((kind,).__contains__, types))
