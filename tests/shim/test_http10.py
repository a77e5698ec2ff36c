"""HTTP/1.0 clients (nginx proxies upstream with HTTP/1.0 by default) get the Halo text
stream and its resume as a close-delimited body: no chunked encoding, no 500."""

from __future__ import annotations

import asyncio
import json

from harness import WIDGET, Harness


async def http10(sb: Harness, method: str, path: str, body: bytes = b"") -> tuple[
        int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", sb.running.http_port)
    head = [f"{method} {path} HTTP/1.0", "Host: 127.0.0.1", f"Authorization: Bearer {WIDGET}"]
    if body:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    raw = await asyncio.wait_for(reader.read(), timeout=30)  # until the server closes
    writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    header_block, _, payload = rest.partition(b"\r\n\r\n")
    headers = {}
    for line in header_block.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, payload


async def test_halo_stream_and_resume_over_http_1_0(sb: Harness) -> None:
    await sb.scripted_agent(reply="one two three")
    body = json.dumps({"message": "hi", "agent_id": "scripted"}).encode()
    status, headers, payload = await http10(sb, "POST", "/api/sdk/chat/stream", body)
    assert status == 200, payload
    assert "chunked" not in headers.get("transfer-encoding", "")
    text = payload.decode()
    assert text.startswith("one two three"), text
    session = headers["x-session-id"]
    status, headers, resumed = await http10(
        sb, "GET", f"/api/sdk/chat/stream/resume?session_id={session}&offset=4")
    assert status == 200, resumed
    assert "chunked" not in headers.get("transfer-encoding", "")
    assert resumed == payload[4:]
