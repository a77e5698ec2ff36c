"""HTTP webhook tools: a tool declared in the agent file that the core runs as a JSON POST.

Request: `POST <url>` with `Content-Type: application/json` and the body

    {"id": "<delivery id>", "tool": "<name>", "arguments": {...},
     "conversation_id": "...", "agent_id": "...", "agent": "<slug>",
     "timestamp": <unix seconds>}

Headers: `X-Switchboard-Tool`, `X-Switchboard-Delivery`, `X-Switchboard-Timestamp` and, when
the tool has a secret (`secret:` or the environment variable named by `secret_env:`),
`X-Switchboard-Signature: sha256=<hex HMAC-SHA256 of the raw body with the secret>`. The
timestamp is inside the signed body too, so a receiver that checks the signature and then
the body's timestamp is protected against replays without a second signing scheme.

Response: a 2xx whose body is JSON (or empty) becomes the tool result. A timeout, a
connection failure, a non-2xx, a redirect, a body over `MAX_WEBHOOK_RESPONSE_BYTES` or a
body that is not JSON becomes an `is_error` tool result the model can read and react to;
nothing here raises into the turn.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import aiohttp
import jsonschema

from core import http_pool, limits
from core.observability.metrics import count_webhook
from core.tool_run import ToolContext, ToolRun

log = logging.getLogger("switchboard.webhooks")

SIGNATURE_HEADER = "X-Switchboard-Signature"
TIMESTAMP_HEADER = "X-Switchboard-Timestamp"
DELIVERY_HEADER = "X-Switchboard-Delivery"
TOOL_HEADER = "X-Switchboard-Tool"
USER_AGENT = "Switchboard-Webhook/1"
_ERROR_BODY_CHARS = 500  # of a failing response, shown to the model


class _WebhookFailure(Exception):
    """A failure reported to the model as the tool result."""

    def __init__(self, message: str, *, outcome: str, **extra: Any) -> None:
        super().__init__(message)
        self.result = {"error": message, **extra}
        self.outcome = outcome  # the delivery metric's label


def sign(secret: str, body: bytes) -> str:
    """The signature header value for `body`: `sha256=<hex HMAC-SHA256>`."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does: compare the header with the expected value in constant time."""
    return hmac.compare_digest(sign(secret, body), header)


def _secret(config: Mapping[str, Any], env: Mapping[str, str]) -> str:
    if config.get("secret"):
        return str(config["secret"])
    name = config.get("secret_env")
    if not name:
        return ""
    value = env.get(str(name), "")
    if not value:
        # Never fall back to an unsigned call: the receiver was promised signatures.
        raise _WebhookFailure(f"webhook secret not configured (environment variable {name})",
                              outcome="not_configured")
    return value


async def _read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes:
    if response.content_length is not None and response.content_length > cap:
        raise _WebhookFailure(f"webhook response larger than {cap} bytes",
                              outcome="invalid_response")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(16 * 1024):
        size += len(chunk)
        if size > cap:
            raise _WebhookFailure(f"webhook response larger than {cap} bytes",
                              outcome="invalid_response")
        chunks.append(chunk)
    return b"".join(chunks)


def _preview(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")[:_ERROR_BODY_CHARS]


async def call_webhook(
    ctx: ToolContext,
    config: dict[str, Any],
    args: dict[str, Any],
    *,
    env: Mapping[str, str] | None = None,
) -> ToolRun:
    """Run one webhook tool call; never raises for anything the receiver does."""
    name = str(config.get("name", ""))
    try:
        schema = config.get("parameters")
        if schema:
            errors = sorted(
                jsonschema.Draft202012Validator(schema).iter_errors(args), key=str
            )
            if errors:
                where = "/".join(str(p) for p in errors[0].absolute_path) or "(root)"
                raise _WebhookFailure(f"invalid arguments at {where}: {errors[0].message}",
                                      outcome="invalid_arguments")
        secret = _secret(config, os.environ if env is None else env)
        timestamp = int(ctx.clock.now().timestamp())
        delivery = ctx.ids.uuid()
        body = json.dumps(
            {
                "id": delivery, "tool": name, "arguments": args,
                "conversation_id": ctx.conversation_id, "agent_id": ctx.agent.id,
                "agent": ctx.agent.slug, "timestamp": timestamp,
            },
            separators=(",", ":"), ensure_ascii=False,
        ).encode("utf-8")
        headers = {
            **{str(k): str(v) for k, v in (config.get("headers") or {}).items()},
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            TOOL_HEADER: name,
            DELIVERY_HEADER: delivery,
            TIMESTAMP_HEADER: str(timestamp),
        }
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, body)
        timeout_s = float(config.get("timeout_s", limits.DEFAULT_WEBHOOK_TIMEOUT_S))
        run = await _post(str(config["url"]), body, headers, timeout_s)
    except _WebhookFailure as exc:
        log.info("webhook tool %s: %s", name, exc)
        count_webhook(exc.outcome)
        return ToolRun(exc.result, is_error=True)
    count_webhook("ok")
    return run


async def _post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> ToolRun:
    # `total` bounds connect + send + the whole response, so a receiver that trickles its
    # answer cannot hold the turn longer than the configured timeout.
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        # The process's pooled session: kept-alive connections, no cookie jar.
        async with http_pool.session().post(
            # No redirects: the signed body must not be replayed to another host.
            url, data=body, headers=headers, allow_redirects=False, timeout=timeout,
        ) as response:
            raw = await _read_capped(response, limits.MAX_WEBHOOK_RESPONSE_BYTES)
            status = response.status
    except TimeoutError as exc:
        raise _WebhookFailure(f"webhook timed out after {timeout_s:g}s",
                              outcome="timeout") from exc
    except aiohttp.ClientError as exc:
        raise _WebhookFailure(f"webhook unreachable: {type(exc).__name__}",
                              outcome="unreachable") from exc
    if not 200 <= status < 300:
        raise _WebhookFailure(f"webhook returned HTTP {status}", outcome="http_error",
                              status=status,
                              body=_preview(raw))
    if not raw.strip():
        return ToolRun({"ok": True, "status": status})
    try:
        return ToolRun(json.loads(raw))
    except ValueError as exc:
        raise _WebhookFailure("webhook returned invalid JSON", outcome="invalid_response",
                              status=status,
                              body=_preview(raw)) from exc
