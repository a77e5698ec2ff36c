"""The HTTP side of the load tool: drives the shim's REST and streaming endpoints with the
same closed-loop workers as bench.loadtool and returns the same `Report`.

Three reply shapes:
- `json`: one JSON reply per request (Halo `/api/sdk/chat`);
- `sse`: Server-Sent Events; `messages` counts text events (`is_text(data)`), a stream
  that does not end with `data: [DONE]` counts as `STREAM_ERROR`;
- `text`: Halo's chunked text stream; `messages` counts HTTP chunks of text (not the
  `\\x1E`-framed action records), or with `count_text` what it counts in each chunk
  (the shim writes a burst of deltas as one chunk, so a chunk can hold many); a stream
  without its final `__ACTIONS__` record counts as `STREAM_ERROR`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Literal

import aiohttp

from bench.loadtool import Report

Mode = Literal["json", "sse", "text"]
RECORD_SEPARATOR = b"\x1e"
FINAL_RECORD = b"\x1e__ACTIONS__"


def session(concurrency: int) -> aiohttp.ClientSession:
    """A client session with one pooled connection per worker."""
    connector = aiohttp.TCPConnector(limit=max(concurrency, 1), force_close=False)
    return aiohttp.ClientSession(connector=connector,
                                 timeout=aiohttp.ClientTimeout(total=60))


async def run_http(
    url: str,
    body: Callable[[int], dict[str, Any]],
    headers: dict[str, str],
    *,
    mode: Mode,
    concurrency: int,
    total: int = 0,
    duration: float = 0.0,
    is_text: Callable[[str], bool] | None = None,
    count_text: Callable[[bytes], int] | None = None,
    name: str = "",
) -> Report:
    """POSTs `body(n)` to `url` with `concurrency` workers for `duration` seconds (or
    `total` requests) and reports like bench.loadtool."""
    report = Report(name=name or url)
    counter = 0
    deadline = 0.0

    def take() -> int | None:
        nonlocal counter
        if duration > 0:
            if time.perf_counter() >= deadline:
                return None
        elif counter >= total:
            return None
        counter += 1
        return counter - 1

    async def one(http: aiohttp.ClientSession, number: int) -> None:
        start = time.perf_counter()
        status = "OK"
        try:
            async with http.post(url, json=body(number), headers=headers) as resp:
                if resp.status != 200:
                    status = f"HTTP {resp.status}"
                    report.errors[f"HTTP {resp.status}: {(await resp.text())[:200]}"] += 1
                elif mode == "json":
                    await resp.read()
                    report.messages += 1
                elif mode == "sse":
                    if not await _read_sse(resp, start, report, is_text):
                        status = "STREAM_ERROR"
                elif not await _read_text(resp, start, report, count_text):
                    status = "STREAM_ERROR"
        except (TimeoutError, aiohttp.ClientError) as exc:
            status = "CONNECTION_ERROR"
            report.errors[f"{type(exc).__name__}: {exc}"] += 1
        report.latencies.append(time.perf_counter() - start)
        report.statuses[status] += 1

    async def worker(http: aiohttp.ClientSession) -> None:
        while (number := take()) is not None:
            await one(http, number)

    async with session(concurrency) as http:
        began = time.perf_counter()
        deadline = began + duration
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        report.total_s = time.perf_counter() - began
    return report


async def _read_sse(resp: aiohttp.ClientResponse, start: float, report: Report,
                    is_text: Callable[[str], bool] | None) -> bool:
    seen_first = False
    async for raw in resp.content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line.startswith("data:"):
            continue
        data = line[5:].lstrip(" ")
        if data == "[DONE]":
            return True
        if is_text is None or is_text(data):
            report.messages += 1
            if not seen_first:
                report.first.append(time.perf_counter() - start)
                seen_first = True
    return False


async def _read_text(resp: aiohttp.ClientResponse, start: float, report: Report,
                     count_text: Callable[[bytes], int] | None = None) -> bool:
    seen_first = False
    finished = False
    # The HTTP chunk being read (a chunk may arrive in pieces): its start only, unless
    # its text is counted.
    head = b""
    keep = len(FINAL_RECORD)
    async for data, end_of_chunk in resp.content.iter_chunks():
        if count_text is not None:
            head += data
        elif len(head) < keep:
            head += data[:keep]
        if not end_of_chunk:
            continue
        chunk, head = head, b""
        if not chunk:
            continue
        if chunk.startswith(RECORD_SEPARATOR):
            finished = finished or chunk.startswith(FINAL_RECORD)
            continue
        report.messages += 1 if count_text is None else count_text(chunk)
        if not seen_first:
            report.first.append(time.perf_counter() - start)
            seen_first = True
    return finished
