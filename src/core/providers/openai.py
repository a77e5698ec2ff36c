"""The `openai` model provider: any OpenAI-compatible chat-completions endpoint.

Speaks `POST {base_url}/chat/completions` with `stream: true` and turns the server-sent
event stream into `ProviderEvent`s. Works against api.openai.com and the many servers that
copy its wire format (vLLM, Ollama, LiteLLM, OpenRouter, llama.cpp, ...), so the parser
is deliberately lenient about the small ways those servers differ (missing tool-call
`index`, SSE comments, no `[DONE]`).

Failure policy:

* 429, 5xx and connection errors are retried with exponential backoff and full jitter,
  honouring `Retry-After` / `retry-after-ms`, but only while opening the stream. Once a
  200 response has started streaming nothing is retried: the caller may already have
  shown part of the answer, and re-running would duplicate it (and bill twice).
* Other 4xx are not retried. Every failure surfaces as `ProviderError` with a user-safe
  message (upstream status and error type, never the API key).
* `read_timeout_s` is the longest silence tolerated between stream chunks; a stalled
  upstream raises `ProviderError("upstream stalled")` instead of hanging the turn.
* Cancelling the consuming task or closing the generator closes the upstream response at
  once, so the upstream stops generating (and billing) for a turn nobody is reading.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from core.providers.base import (
    ChatMessage,
    GenerationRequest,
    ProviderError,
    ProviderEvent,
    TextChunk,
    ToolCallArgsChunk,
    ToolCallBegin,
    ToolCallDone,
    UsageReport,
    estimate_tokens,
)

__all__ = ["OpenAIConfig", "OpenAIProvider"]

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"

# A Retry-After longer than this is not worth waiting out inside a live chat turn: fail
# fast (retryable) and let the caller decide, rather than hold the user for minutes.
_MAX_RETRY_AFTER_S = 60.0
# Error bodies are read only this far: they end up in a message, not in memory wholesale.
_MAX_ERROR_BODY = 64 * 1024
_MAX_ERROR_MESSAGE = 300
# OpenAI's 401 message echoes a masked key ("sk-abc***xyz"); scrub anything key-shaped.
_KEY_SHAPED = re.compile(r"\b(?:sk|rk)-[A-Za-z0-9_\-*.]{3,}")
# OpenAI rejects a message `name` outside this pattern with a 400; drop such names.
_VALID_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

_KNOWN_OPTIONS = frozenset(
    {
        "kind",
        "base_url",
        "base_url_env",
        "model",
        "api_key",
        "api_key_env",
        "connect_timeout_s",
        "read_timeout_s",
        "max_retries",
        "backoff_base_s",
        "backoff_max_s",
        "temperature",
        "headers",
    }
)


@dataclass(frozen=True)
class OpenAIConfig:
    """Settings for one OpenAI-compatible endpoint.

    `api_key` and `extra_headers` are kept out of `repr` so a logged config never leaks
    credentials. An empty `api_key` sends no `Authorization` header (local servers such
    as Ollama or vLLM usually need none).
    """

    model: str
    api_key: str = field(default="", repr=False)
    base_url: str = DEFAULT_BASE_URL
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0  # longest silence tolerated between stream chunks
    max_retries: int = 3  # retries after the first attempt (so up to 4 requests)
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    temperature: float | None = None
    extra_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def from_options(cls, options: Mapping[str, Any], env: Mapping[str, str]) -> OpenAIConfig:
        """Build a config from an agent file's `provider:` options, falling back to `env`.

        `api_key` wins over the variable named by `api_key_env` (default
        `OPENAI_API_KEY`); `base_url` wins over the variable named by `base_url_env`
        (default `OPENAI_BASE_URL`), then the public OpenAI URL. Raises `ValueError`
        whose message starts with the offending option's name.
        """
        unknown = sorted(str(k) for k in options if k not in _KNOWN_OPTIONS)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown option for the openai provider")

        model = options.get("model")
        if not isinstance(model, str) or not model.strip():
            raise ValueError("model: is required (the upstream model name, e.g. gpt-4o-mini)")

        api_key_env = _opt_str(options, "api_key_env", "OPENAI_API_KEY")
        base_url_env = _opt_str(options, "base_url_env", "OPENAI_BASE_URL")
        api_key = _opt_str(options, "api_key", "") or env.get(api_key_env, "")
        base_url = (
            _opt_str(options, "base_url", "") or env.get(base_url_env, "") or DEFAULT_BASE_URL
        ).rstrip("/")
        if not re.match(r"^https?://[^/\s]+", base_url):
            raise ValueError("base_url: must be an http:// or https:// URL")
        if not api_key and base_url == DEFAULT_BASE_URL:
            # Only the public endpoint is known to need a key; failing here beats a 401
            # on the first customer message.
            raise ValueError(f"api_key: not set (set `api_key` or the {api_key_env} variable)")

        temperature: float | None = None
        if options.get("temperature") is not None:
            temperature = _opt_number(options, "temperature", 0.0, minimum=0.0)
            if temperature > 2:
                raise ValueError("temperature: must be between 0 and 2")

        max_retries = options.get("max_retries", 3)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError("max_retries: must be a non-negative integer")

        headers_raw = options.get("headers", {}) or {}
        if not isinstance(headers_raw, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers_raw.items()
        ):
            raise ValueError("headers: must be a mapping of header name to string value")

        backoff_base_s = _opt_number(options, "backoff_base_s", 0.5, minimum=0.0)
        backoff_max_s = _opt_number(options, "backoff_max_s", 8.0, minimum=0.0)
        if backoff_max_s < backoff_base_s:
            raise ValueError("backoff_max_s: must be at least backoff_base_s")

        return cls(
            model=model.strip(),
            api_key=api_key,
            base_url=base_url,
            connect_timeout_s=_opt_number(options, "connect_timeout_s", 10.0, positive=True),
            read_timeout_s=_opt_number(options, "read_timeout_s", 60.0, positive=True),
            max_retries=max_retries,
            backoff_base_s=backoff_base_s,
            backoff_max_s=backoff_max_s,
            temperature=temperature,
            extra_headers=tuple(sorted(headers_raw.items())),
        )


def _opt_str(options: Mapping[str, Any], key: str, default: str) -> str:
    value = options.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ValueError(f"{key}: must be a string")
    return value.strip()


def _opt_number(
    options: Mapping[str, Any],
    key: str,
    default: float,
    *,
    positive: bool = False,
    minimum: float | None = None,
) -> float:
    value = options.get(key, default)
    # bool is an int subclass; `read_timeout_s: yes` is a typo, not a number.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key}: must be a number")
    if positive and value <= 0:
        raise ValueError(f"{key}: must be greater than 0")
    if minimum is not None and value < minimum:
        raise ValueError(f"{key}: must be at least {minimum:g}")
    return float(value)


SessionSource = aiohttp.ClientSession | Callable[[], aiohttp.ClientSession]


@dataclass
class _ToolCallState:
    id: str
    name: str = ""
    begun: bool = False
    pending_args: list[str] = field(default_factory=list)  # fragments seen before the name


class OpenAIProvider:
    """A `ModelProvider` for OpenAI-compatible chat-completions endpoints.

    `session` may be a shared `aiohttp.ClientSession` or a zero-argument callable
    returning one (for sessions created after the provider); either way the provider
    never closes it. Without one, each `generate` call uses a private session that it
    closes itself, so nothing leaks if the owner never calls a close method. `sleep` and
    `rand` are injectable so backoff can be tested without waiting.
    """

    def __init__(
        self,
        config: OpenAIConfig,
        *,
        session: SessionSource | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._config = config
        self._session_source = session
        self._sleep = sleep
        self._rand = rand
        self._url = f"{config.base_url.rstrip('/')}/chat/completions"

    @property
    def model_name(self) -> str:
        """The configured upstream model name."""
        return self._config.model

    @property
    def config(self) -> OpenAIConfig:
        """The provider's configuration."""
        return self._config

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[ProviderEvent, None]:
        """Stream one model step for `request`.

        Raises `ProviderError` on upstream failure. Closing the generator (`aclose()`,
        e.g. via `contextlib.aclosing`) or cancelling the consuming task closes the
        upstream response before returning. Typed as an `AsyncGenerator` (a subtype of
        the protocol's `AsyncIterator`) so callers can close it without a cast.
        """
        body = build_request_body(self._config, request)
        async with self._session() as session:
            response = await self._open_stream(session, body)
            try:
                if response.content_type == "application/json":
                    # Some compatible servers answer a failure with 200 + a JSON error
                    # instead of a stream; surface it rather than an empty reply.
                    error = await self._error_from(response)
                    raise ProviderError(
                        str(error).replace("returned HTTP 200", "answered without streaming")
                    )
                async for event in self._events(response, request):
                    yield event
            finally:
                # close(), not release(): a half-read response must drop its connection
                # so the upstream sees the disconnect and stops generating.
                response.close()

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[aiohttp.ClientSession]:
        source = self._session_source
        if source is None:
            async with aiohttp.ClientSession() as own:
                yield own
        elif isinstance(source, aiohttp.ClientSession):
            yield source
        else:
            yield source()

    def _headers(self) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        }
        headers.update(dict(self._config.extra_headers))
        if self._config.api_key:
            headers["Authorization"] = f"Bearer {self._config.api_key}"
        return headers

    def _scrub(self, text: str) -> str:
        """Remove anything credential-shaped from upstream text before it reaches a user."""
        if self._config.api_key:
            text = text.replace(self._config.api_key, "[redacted]")
        text = _KEY_SHAPED.sub("[redacted]", text)
        if len(text) > _MAX_ERROR_MESSAGE:
            text = text[: _MAX_ERROR_MESSAGE - 1] + "…"
        return text

    def _backoff(self, attempt: int) -> float:
        # Full jitter (AWS architecture blog): uniform over [0, capped exponential), which
        # spreads out many clients retrying the same overloaded upstream.
        ceiling = min(self._config.backoff_max_s, self._config.backoff_base_s * (2.0**attempt))
        return self._rand() * ceiling

    async def _open_stream(
        self, session: aiohttp.ClientSession, body: dict[str, Any]
    ) -> aiohttp.ClientResponse:
        """POST the request, retrying transient failures; returns a 200 response."""
        cfg = self._config
        timeout = aiohttp.ClientTimeout(
            total=None,  # a long answer may legitimately stream for minutes
            connect=cfg.connect_timeout_s,
            sock_connect=cfg.connect_timeout_s,
            sock_read=cfg.read_timeout_s,  # also bounds the wait for response headers
        )
        attempt = 0
        while True:
            delay: float | None
            try:
                response = await session.post(
                    self._url, json=body, headers=self._headers(), timeout=timeout
                )
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                reason = (
                    "timed out connecting to"
                    if isinstance(exc, TimeoutError)
                    else "could not connect to"
                )
                error = ProviderError(f"{reason} the model provider", retryable=True)
                if attempt >= cfg.max_retries:
                    raise error from exc
                delay = self._backoff(attempt)
                logger.warning(
                    "openai: %s %s (%s); retry %d/%d in %.2fs",
                    reason,
                    cfg.base_url,
                    type(exc).__name__,
                    attempt + 1,
                    cfg.max_retries,
                    delay,
                )
            except aiohttp.ClientError as exc:
                # A malformed upstream response or similar: not transient, don't retry.
                raise ProviderError("the model provider sent an invalid response") from exc
            else:
                if response.status == 200:
                    return response
                status = response.status
                try:
                    error = await self._error_from(response)
                    retry_after = _retry_after_s(response.headers)
                finally:
                    response.close()
                if not error.retryable or attempt >= cfg.max_retries:
                    raise error
                if retry_after is not None and retry_after > _MAX_RETRY_AFTER_S:
                    raise ProviderError(
                        f"{error} (upstream asked to retry after {retry_after:.0f}s)",
                        retryable=True,
                    )
                delay = retry_after if retry_after is not None else self._backoff(attempt)
                logger.warning(
                    "openai: HTTP %d from %s; retry %d/%d in %.2fs",
                    status,
                    cfg.base_url,
                    attempt + 1,
                    cfg.max_retries,
                    delay,
                )
            await self._sleep(delay)
            attempt += 1

    async def _error_from(self, response: aiohttp.ClientResponse) -> ProviderError:
        """Turn a non-200 response into a user-safe `ProviderError`."""
        status = response.status
        retryable = status == 429 or status >= 500
        raw = b""
        try:
            async with asyncio.timeout(self._config.read_timeout_s):
                raw = await response.content.read(_MAX_ERROR_BODY)
        except (aiohttp.ClientError, TimeoutError):
            pass  # the status alone still makes a useful error
        kind, message = _parse_error_body(raw)
        text = f"model provider returned HTTP {status}"
        if kind:
            text += f" ({self._scrub(kind)})"
        if message:
            text += f": {self._scrub(message)}"
        return ProviderError(text, retryable=retryable)

    async def _events(
        self, response: aiohttp.ClientResponse, request: GenerationRequest
    ) -> AsyncIterator[ProviderEvent]:
        """Parse the SSE body of a 200 response into provider events."""
        calls: dict[int, _ToolCallState] = {}
        finished = False
        usage_sent = False
        # Usage is reported under the configured model name, the one operators price
        # (the server answers with a dated variant, e.g. gpt-4o-mini-2024-07-18).
        model = self._config.model
        produced: list[str] = []  # completion text, for the usage estimate

        def finish() -> list[ProviderEvent]:
            nonlocal finished
            finished = True
            out: list[ProviderEvent] = []
            for index in sorted(calls):
                state = calls[index]
                if not state.begun:
                    raise ProviderError("model provider sent a tool call without a name")
                out.append(ToolCallDone(id=state.id))
            return out

        async for data in self._sse_data(response):
            if data == "[DONE]":
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                raise ProviderError("model provider sent a malformed stream chunk") from None
            if not isinstance(chunk, dict):
                raise ProviderError("model provider sent a malformed stream chunk")
            if "error" in chunk:
                # Mid-stream failures arrive as a data event, not as an HTTP status.
                kind, message = _error_fields(chunk["error"])
                text = "model provider failed mid-stream"
                if kind:
                    text += f" ({self._scrub(kind)})"
                if message:
                    text += f": {self._scrub(message)}"
                raise ProviderError(text)
            for choice in chunk.get("choices") or ():
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue  # we never ask for n > 1
                delta = choice.get("delta") or {}
                for key in ("content", "refusal"):
                    piece = delta.get(key)
                    if isinstance(piece, str) and piece:
                        produced.append(piece)
                        yield TextChunk(text=piece)
                for position, raw_call in enumerate(delta.get("tool_calls") or ()):
                    for event in _tool_call_events(calls, position, raw_call, produced):
                        yield event
                if choice.get("finish_reason") and not finished:
                    for event in finish():
                        yield event

            usage = chunk.get("usage")
            if isinstance(usage, dict) and not usage_sent:
                usage_sent = True
                yield UsageReport(
                    prompt_tokens=_int(usage.get("prompt_tokens")),
                    completion_tokens=_int(usage.get("completion_tokens")),
                    model=model,
                )

        if not finished:
            # Some compatible servers end the stream without a finish_reason.
            for event in finish():
                yield event
        if not usage_sent:
            yield UsageReport(
                prompt_tokens=estimate_tokens(_prompt_text(request)),
                completion_tokens=estimate_tokens("".join(produced)),
                model=model,
            )

    async def _sse_data(self, response: aiohttp.ClientResponse) -> AsyncIterator[str]:
        """Yield the `data` payload of each server-sent event, enforcing the stall timeout.

        Reads raw chunks rather than `readline()` because aiohttp caps line length and
        a single chunk with large tool arguments can exceed it.
        """
        buffer = b""
        data_lines: list[str] = []
        while True:
            try:
                async with asyncio.timeout(self._config.read_timeout_s):
                    chunk = await response.content.readany()
            except TimeoutError:
                # Both our own timer and aiohttp's sock_read land here.
                raise ProviderError("upstream stalled", retryable=True) from None
            except aiohttp.ClientError as exc:
                raise ProviderError(
                    "lost the connection to the model provider mid-stream", retryable=True
                ) from exc
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw_line in lines:
                line = raw_line.rstrip(b"\r").decode("utf-8", errors="replace")
                if not line:
                    if data_lines:
                        yield "\n".join(data_lines)
                        data_lines = []
                elif line.startswith("data:"):
                    value = line[5:]
                    data_lines.append(value[1:] if value.startswith(" ") else value)
                # Anything else is an SSE comment (": keep-alive", OpenRouter's
                # ": OPENROUTER PROCESSING") or a field we do not use (event:, id:).
        tail = buffer.rstrip(b"\r").decode("utf-8", errors="replace")
        if tail.startswith("data:"):
            data_lines.append(tail[5:].lstrip(" "))
        if data_lines:
            # Lenient: a final event without its blank line is still delivered.
            yield "\n".join(data_lines)


def _tool_call_events(
    calls: dict[int, _ToolCallState],
    position: int,
    raw: Any,
    produced: list[str],
) -> list[ProviderEvent]:
    """Events for one `delta.tool_calls[i]` fragment, updating the per-index state."""
    if not isinstance(raw, dict):
        return []
    index = raw.get("index")
    call_id = raw.get("id") if isinstance(raw.get("id"), str) else ""
    if not isinstance(index, int):
        # Some compatible servers omit `index`: match by id, else by list position.
        index = next((i for i, s in calls.items() if call_id and s.id == call_id), position)
    function = raw.get("function") or {}
    name = function.get("name") if isinstance(function.get("name"), str) else ""
    arguments = function.get("arguments") if isinstance(function.get("arguments"), str) else ""

    state = calls.get(index)
    if state is None:
        state = _ToolCallState(id=call_id or f"call_{index}_{random.getrandbits(48):012x}")
        calls[index] = state
    out: list[ProviderEvent] = []
    if name and not state.begun:
        state.name = name
        state.begun = True
        out.append(ToolCallBegin(id=state.id, name=name))
        out.extend(ToolCallArgsChunk(id=state.id, delta=d) for d in state.pending_args)
        state.pending_args.clear()
    if arguments:
        produced.append(arguments)
        if state.begun:
            out.append(ToolCallArgsChunk(id=state.id, delta=arguments))
        else:
            state.pending_args.append(arguments)
    return out


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds the upstream asked us to wait, from `retry-after-ms` or `Retry-After`."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_fields(error: Any) -> tuple[str, str]:
    """(type, message) from an OpenAI-style `error` value (object or bare string)."""
    if isinstance(error, str):
        return "", error
    if isinstance(error, dict):
        kind = error.get("type") or error.get("code") or ""
        message = error.get("message") or ""
        return str(kind), str(message)
    return "", ""


def _parse_error_body(raw: bytes) -> tuple[str, str]:
    """(type, message) from an error body; empty strings when it is not JSON we know.

    Non-JSON bodies (a proxy's HTML 502 page) are dropped rather than shown to users.
    """
    try:
        body = json.loads(raw.decode("utf-8", errors="replace"))
    except ValueError:
        return "", ""
    if isinstance(body, list) and body:
        body = body[0]  # a few proxies wrap the error in a list
    if not isinstance(body, dict):
        return "", ""
    if "error" in body:
        return _error_fields(body["error"])
    # FastAPI-based servers (vLLM, LiteLLM) sometimes answer {"detail": "..."}.
    detail = body.get("detail") or body.get("message")
    return ("", detail) if isinstance(detail, str) else ("", "")


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def render_system_prompt(request: GenerationRequest) -> str:
    """The system message: instructions, then context, traits and behaviour, compactly.

    Context values are rendered one per line as `label: value` (JSON for non-strings) so
    the model sees what each value means without spending tokens on formatting.
    """
    parts: list[str] = []
    if request.instructions.strip():
        parts.append(request.instructions.strip())
    if request.context:
        lines = ["Context:"]
        for key, entry in request.context.items():
            lines.append(f"- {entry.label or key}: {_compact(entry.value)}")
        parts.append("\n".join(lines))
    if request.traits:
        parts.append(f"Traits: {_compact(request.traits)}")
    if request.behavior_context.strip():
        parts.append(f"Behavior: {request.behavior_context.strip()}")
    return "\n\n".join(parts)


def _convert_message(message: ChatMessage) -> dict[str, Any]:
    role = message.role
    if role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if role not in ("system", "user", "assistant"):
        raise ProviderError(f"unsupported message role for the model provider: {role!r}")
    out: dict[str, Any] = {"role": role, "content": message.content}
    if role == "assistant" and message.tool_calls:
        # OpenAI expects null (not "") content on a pure tool-call turn.
        out["content"] = message.content or None
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json or "{}"},
            }
            for call in message.tool_calls
        ]
    if message.name and _VALID_NAME.fullmatch(message.name):
        out["name"] = message.name
    return out


def build_request_body(config: OpenAIConfig, request: GenerationRequest) -> dict[str, Any]:
    """The JSON body for `POST /chat/completions` (streaming, with usage)."""
    messages: list[dict[str, Any]] = []
    system = render_system_prompt(request)
    if system:
        messages.append({"role": "system", "content": system})
    messages.extend(_convert_message(m) for m in request.messages)
    body: dict[str, Any] = {
        "model": config.model,
        "messages": messages,
        "stream": True,
        # Without this OpenAI sends no usage at all when streaming.
        "stream_options": {"include_usage": True},
    }
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    # Some compatible servers reject a missing/empty schema.
                    "parameters": tool.parameters or {"type": "object", "properties": {}},
                },
            }
            for tool in request.tools
        ]
    if config.temperature is not None:
        body["temperature"] = config.temperature
    return body


def _prompt_text(request: GenerationRequest) -> str:
    """Everything sent as prompt, flattened, for the token estimate."""
    parts = [render_system_prompt(request)]
    for message in request.messages:
        parts.append(message.content)
        parts.extend(call.name + call.arguments_json for call in message.tool_calls)
    parts.extend(tool.name + tool.description + _compact(tool.parameters) for tool in request.tools)
    return "".join(parts)
