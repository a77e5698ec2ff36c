"""The log formats and the label bound, without a server."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from core.observability.logs import JsonFormatter, RequestIdFilter, TextFormatter
from core.observability.metrics import MAX_LABEL_CHARS, OTHER, bounded
from core.observability.requests import reset_request_id, set_request_id


def record(message: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("switchboard.test", logging.INFO, __file__, 1, message, (), None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_json_lines_carry_known_fields_only() -> None:
    line = json.loads(JsonFormatter().format(record(
        "turn completed", request_id="r-1", turn_id="t-1", status="completed",
        duration_ms=12.5, message_text="hello, my password is hunter2", authorization="x",
    )))
    assert line["message"] == "turn completed" and line["level"] == "info"
    assert line["request_id"] == "r-1" and line["turn_id"] == "t-1"
    assert line["duration_ms"] == 12.5 and line["time"].endswith("Z")
    assert "hunter2" not in json.dumps(line) and "authorization" not in line


def test_json_lines_include_the_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = record("failed")
        rec.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(rec))
    assert "ValueError: boom" in line["exception"]


def test_the_current_request_id_is_stamped_on_every_record() -> None:
    token = set_request_id("req-42")
    try:
        rec = record("something happened")
        assert RequestIdFilter().filter(rec)
    finally:
        reset_request_id(token)
    assert json.loads(JsonFormatter().format(rec))["request_id"] == "req-42"
    assert TextFormatter().format(rec).endswith("something happened [request_id=req-42]")
    plain = record("no request")
    RequestIdFilter().filter(plain)
    assert "request_id" not in TextFormatter().format(plain)


@pytest.mark.parametrize(("value", "label"), [
    ("support-agent", "support-agent"),
    ("a" * MAX_LABEL_CHARS, "a" * MAX_LABEL_CHARS),
    ("a" * (MAX_LABEL_CHARS + 1), OTHER),
    ("gpt-4o-mini", "gpt-4o-mini"),
    ("has space", OTHER),
    ('quote"d', OTHER),
    ("", "none"),
])
def test_label_values_are_bounded(value: str, label: str) -> None:
    assert bounded(value) == label
