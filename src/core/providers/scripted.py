"""The `scripted` provider: deterministic replies for tests, demos and benchmarks.

Options (agent file `provider:` mapping):
- `reply`: the reply text; `{message}` is replaced by the user's message (default echoes it).
- `delay_ms`: sleep before each token (default 0).
- `repeat`: repeat the reply this many times (long streams for benchmarks).
- `tool_calls`: list of `{name, arguments}` to call before replying; the reply is sent once
  every call has a result (`{tool_results}` in `reply` is replaced by them).
  `{context}` and `{traits}` are replaced by the model input's context values and traits
  as compact JSON (tests see exactly what reached the model).
- `args_chunk`: split each call's JSON arguments into deltas of this many characters.
- `actions`: list of `{type, payload}` emitted with the reply.
- `confidence`: reported confidence (default 0.9).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from core.events import ActionData
from core.providers.base import (
    Confidence,
    GenerationRequest,
    ProviderAction,
    ProviderEvent,
    TextChunk,
    ToolCallArgsChunk,
    ToolCallBegin,
    ToolCallDone,
    UsageReport,
    estimate_tokens,
)

_TOKEN = re.compile(r"\s*\S+")


def split_tokens(text: str) -> list[str]:
    """Words with their leading whitespace; the concatenation is the text itself."""
    tokens = _TOKEN.findall(text)
    tail = text[sum(len(t) for t in tokens):]
    if tail:
        tokens.append(tail)
    return tokens


class ScriptedProvider:
    def __init__(self, options: dict[str, Any] | None = None) -> None:
        options = options or {}
        self.reply = str(options.get("reply", "You said: {message}"))
        self.delay_s = float(options.get("delay_ms", 0)) / 1000.0
        self.repeat = max(1, int(options.get("repeat", 1)))
        self.tool_calls = list(options.get("tool_calls", []) or [])
        self.args_chunk = max(1, int(options.get("args_chunk", 8)))
        self.actions = list(options.get("actions", []) or [])
        self.confidence = float(options.get("confidence", 0.9))
        self.calls = 0  # how many times generate() ran (tests count model calls)

    @property
    def model_name(self) -> str:
        return "scripted"

    async def generate(self, request: GenerationRequest) -> AsyncIterator[ProviderEvent]:
        self.calls += 1
        answered = {m.tool_call_id for m in request.messages if m.role == "tool"}
        step = sum(1 for m in request.messages if m.role == "assistant" and m.tool_calls)
        prompt_tokens = sum(estimate_tokens(m.content) for m in request.messages)
        if self.tool_calls and not answered and step == 0:
            for index, call in enumerate(self.tool_calls):
                call_id = f"call_{step}_{index}"
                args = json.dumps(call.get("arguments", {}), separators=(",", ":"))
                yield ToolCallBegin(call_id, str(call["name"]))
                for start in range(0, len(args), self.args_chunk):
                    if self.delay_s:
                        await asyncio.sleep(self.delay_s)
                    yield ToolCallArgsChunk(call_id, args[start:start + self.args_chunk])
                yield ToolCallDone(call_id)
            yield UsageReport(prompt_tokens, 5 * len(self.tool_calls), "scripted")
            return
        results = [m.content for m in request.messages if m.role == "tool"]
        text = self.reply.replace("{message}", request.last_user_message)
        text = text.replace("{tool_results}", "; ".join(results))
        if "{context}" in text:
            values = {k: v.value for k, v in sorted(request.context.items())}
            text = text.replace("{context}", json.dumps(values, sort_keys=True, default=str))
        if "{traits}" in text:
            text = text.replace("{traits}", json.dumps(request.traits, sort_keys=True,
                                                       default=str))
        text = "".join([text] * self.repeat) if self.repeat > 1 else text
        for token in split_tokens(text):
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            yield TextChunk(token)
        for action in self.actions:
            yield ProviderAction(ActionData(str(action["type"]), dict(action.get("payload", {}))))
        yield Confidence(self.confidence)
        yield UsageReport(prompt_tokens, estimate_tokens(text), "scripted")
