"""Client tools: the rules a turn's client-run tools and their resume results must follow.

Checked in the core (not in a dialect) so every client gets the same answer: the aibot
dialect's `tools`, the gRPC `TurnInput.client_tools`, and the results a resume carries.
A client tool's `parameters` must be a valid JSON Schema (checked with the schema's own
metaschema, or the latest draft when it names none) describing an object, because every
model provider hands tools to the model as functions taking one JSON object.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

from core import limits
from core.domain import ResumeRequest
from core.errors import Code, Reason, SwitchboardError
from core.providers.base import ToolSpec

_NAME = re.compile(rf"^[A-Za-z0-9_-]{{1,{limits.MAX_CLIENT_TOOL_NAME_CHARS}}}$")


def _bad_tool(message: str, index: int, **details: Any) -> SwitchboardError:
    return SwitchboardError(
        Code.INVALID_ARGUMENT, Reason.INVALID_TOOLS, message,
        {"field": f"tools[{index}]"}, details=details or None,
    )


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def validate_client_tools(tools: Iterable[ToolSpec]) -> None:
    """Names, descriptions and parameter schemas of a request's client tools.

    Raises INVALID_ARGUMENT / invalid_tools naming the first bad tool (`field` metadata is
    `tools[<index>]`)."""
    seen: set[str] = set()
    for index, tool in enumerate(tools):
        if not _NAME.fullmatch(tool.name):
            raise _bad_tool(
                f"tools[{index}].name must be 1-{limits.MAX_CLIENT_TOOL_NAME_CHARS} letters, "
                "digits, underscores or hyphens.", index,
            )
        if tool.name in seen:
            raise _bad_tool(f"tools[{index}].name '{tool.name}' is used by another tool.", index)
        seen.add(tool.name)
        if len(tool.description) > limits.MAX_CLIENT_TOOL_DESCRIPTION_CHARS:
            raise _bad_tool(
                f"tools[{index}].description must be at most "
                f"{limits.MAX_CLIENT_TOOL_DESCRIPTION_CHARS:,} characters.", index,
            )
        _check_schema(index, tool.parameters)


def _check_schema(index: int, schema: Mapping[str, Any]) -> None:
    if _json_size(schema) > limits.MAX_CLIENT_TOOL_PARAMETERS_BYTES:
        raise _bad_tool(
            f"tools[{index}].parameters must be at most "
            f"{limits.MAX_CLIENT_TOOL_PARAMETERS_BYTES:,} bytes of JSON.", index,
        )
    if not schema:
        return  # {}: a tool without arguments
    try:
        validator_for(schema).check_schema(dict(schema))
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise _bad_tool(
            f"tools[{index}].parameters is not a valid JSON Schema: {exc.message}"
            + (f" (at {where})" if where else ""), index,
        ) from None
    kind = schema.get("type")
    if kind is not None and kind != "object":
        raise _bad_tool(f"tools[{index}].parameters must describe an object (type: object).",
                        index)


def check_no_clash(client: Iterable[ToolSpec], server: Iterable[ToolSpec]) -> None:
    """A client tool may not take the name of one of the agent's server tools: a call to
    it would be ambiguous (run here, or interrupt for the client?)."""
    server_names = {t.name for t in server if not t.client_side}
    for index, tool in enumerate(client):
        if tool.name in server_names:
            raise _bad_tool(
                f"tools[{index}].name '{tool.name}' is a server tool of this agent.", index
            )


def merge_tools(agent_tools: Iterable[ToolSpec], client: Iterable[ToolSpec]) -> list[ToolSpec]:
    """The tools a turn offers the model: the agent's, then the request's client tools; a
    request tool replaces an agent-declared client tool of the same name."""
    client = list(client)
    names = {t.name for t in client}
    return [*(t for t in agent_tools if t.name not in names), *client]


def check_results(resume: ResumeRequest) -> None:
    """Every result a resume carries must be JSON text (it is handed to the model as is)."""
    for result in resume.results:
        try:
            json.loads(result.result_json)
        except ValueError:
            raise SwitchboardError(
                Code.INVALID_ARGUMENT, Reason.INVALID_INPUT,
                f"The result for tool call '{result.tool_call_id}' is not valid JSON.",
                {"field": "resume.results"},
            ) from None


def tools_to_json(tools: Iterable[ToolSpec]) -> list[dict[str, Any]]:
    """Client tools as stored with an interrupt, so a resume need not send them again."""
    return [
        {"name": t.name, "description": t.description, "parameters": t.parameters}
        for t in tools
    ]


def tools_from_json(data: Any) -> tuple[ToolSpec, ...]:
    if not isinstance(data, list):
        return ()
    return tuple(
        ToolSpec(str(t["name"]), str(t.get("description", "")),
                 dict(t.get("parameters") or {}), client_side=True)
        for t in data if isinstance(t, dict) and "name" in t
    )
