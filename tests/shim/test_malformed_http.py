"""Malformed HTTP (oversized request line or header, smuggling attempts) is answered in
the dialect's envelope where the path names the dialect, and logged as one warning line,
not an ERROR with a traceback per request."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from harness import Harness

ROUTES = {
    "halo": ("/api/sdk/chat", lambda b: b["error"]["code"], "invalid_request"),
    "slug": ("/v1/api/chat/support-agent", lambda b: b["error"]["name"], "ValidationError"),
    "aibot": ("/v1/aibot/bots/support-agent/send-message", lambda b: b["code"],
              "invalid_argument"),
    "flow": ("/api/public/v1/chat/messages", lambda b: b["error"]["code"], "invalid_request"),
}

MALFORMED = {
    "long-request-line": lambda p: f"POST {p}?q={'a' * 10_000} HTTP/1.1\r\nHost: x\r\n\r\n",
    "long-header": lambda p: f"POST {p} HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 10_000}\r\n\r\n",
    "cl-and-te": lambda p: (f"POST {p} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "te-list": lambda p: (f"POST {p} HTTP/1.1\r\nHost: x\r\n"
                         "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
}


async def raw(sb: Harness, data: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", sb.running.http_port)
    writer.write(data)
    out = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    head, _, body = out.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (li.partition(":") for li in lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize("dialect", list(ROUTES))
@pytest.mark.parametrize("kind", list(MALFORMED))
async def test_malformed_http_is_an_envelope_and_one_warning(
        sb: Harness, caplog: pytest.LogCaptureFixture, dialect: str, kind: str) -> None:
    path, code_of, expected = ROUTES[dialect]
    caplog.clear()
    with caplog.at_level(logging.INFO):
        status, headers, body = await raw(sb, MALFORMED[kind](path).encode())
    assert status == 400
    assert headers["content-type"].startswith("application/json"), body[:200]
    data: Any = json.loads(body)
    assert code_of(data) == expected
    assert b"aaaa" not in body  # the offending bytes are not echoed
    shim_records = [r for r in caplog.records if r.name == "switchboard.shim.http"]
    assert len(shim_records) == 1 and shim_records[0].levelno == logging.WARNING
    assert "\n" not in shim_records[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
