"""Agent definition files (YAML): parsing and validation with errors named by field.

A definition names the agent, its model provider, its knowledge base, its tools, its
routing rules, its handoffs and its flows. Every section is validated here for shape, and
every problem is reported at once under its field path (`tools[1].url`,
`routing[0].when.outside_hours.timezone`), so `switchboard agents apply` can list them all.
Sections interpreted elsewhere (routing and handoffs by `core.engine.router`, webhook tools
by `core.webhooks`, flows by the flow engine) are kept as plain data. See docs/agents.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jsonschema
import yaml

from core import limits

PROVIDER_KINDS = ("kb", "openai", "scripted")
BUILTIN_TOOLS = ("search_knowledge", "create_ticket", "highlight")
TOOL_KINDS = ("builtin", "webhook", "client")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# OpenAI-compatible APIs reject function names outside this pattern.
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")
MAX_SLUG_LENGTH = 64

TOP_LEVEL_KEYS = frozenset({
    "name", "slug", "description", "instructions", "active", "provider", "knowledge_base",
    "tools", "routing", "handoffs", "flows", "confidence_threshold",
})
KB_OPTIONS = frozenset({"word_delay_ms", "answer_floor"})
_TOOL_KEYS = {
    "builtin": frozenset({"name", "kind", "description", "team"}),
    "webhook": frozenset({"name", "kind", "description", "url", "parameters", "timeout_s",
                          "secret", "secret_env", "headers"}),
    "client": frozenset({"name", "kind", "description", "parameters"}),
}
_ROUTING_KEYS = frozenset({"name", "when", "team", "action", "message"})
_HANDOFF_KEYS = frozenset({"name", "when", "to", "reason"})
_WHEN_KEYS = ("keywords", "pattern", "mode", "outside_hours")
_HOURS_KEYS = frozenset({"timezone", "days", "open", "close", "holidays"})
_DAY_NAMES = {name: short for short in WEEKDAYS for name in (short, {
    "mon": "monday", "tue": "tuesday", "wed": "wednesday", "thu": "thursday",
    "fri": "friday", "sat": "saturday", "sun": "sunday"}[short])}

Errors = dict[str, str]


class AgentDefinitionError(ValueError):
    """A definition is invalid; `errors` maps a field path to what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        lines = "; ".join(f"{path}: {msg}" for path, msg in errors.items())
        super().__init__(f"invalid agent definition: {lines}")


def slugify(name: str) -> str:
    """'Customer Support' -> 'customer-support' (the slug API's documented derivation)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:MAX_SLUG_LENGTH].strip("-") or "agent"


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    kind: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AgentDefinition:
    name: str
    slug: str
    provider: ProviderConfig
    description: str = ""
    instructions: str = ""
    knowledge_base: str = ""  # absolute folder path (resolved against the file's folder,
    # or for a stored agent against the core's knowledge root)
    knowledge_base_url: str = ""
    tools: tuple[dict[str, Any], ...] = ()
    routing: tuple[dict[str, Any], ...] = ()
    flows: dict[str, Any] = field(default_factory=dict)
    handoffs: tuple[dict[str, Any], ...] = ()
    confidence_threshold: float = 0.5
    active: bool = False
    raw: dict[str, Any] = field(default_factory=dict)

    def tool_names(self) -> list[str]:
        return [str(t.get("name", "")) for t in self.tools]


# -- small checks -------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    # bool is an int subclass; `timeout_s: yes` is a typo, not a number.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _unknown_keys(path: str, data: dict[str, Any], known: frozenset[str],
                  errors: Errors) -> None:
    for key in data:
        if key not in known and not str(key).startswith("x-"):
            errors[f"{path}.{key}" if path else str(key)] = (
                f"unknown field; expected one of {', '.join(sorted(known))}"
            )


def _string_list(path: str, value: Any, errors: Errors) -> list[str]:
    if not isinstance(value, list) or not value or not all(
        isinstance(v, str) and v.strip() for v in value
    ):
        errors[path] = "must be a non-empty list of non-empty strings"
        return []
    return value


def _json_schema(path: str, value: Any, errors: Errors) -> None:
    if not isinstance(value, dict):
        errors[path] = "must be a JSON Schema object"
        return
    try:
        jsonschema.Draft202012Validator.check_schema(value)
    except jsonschema.SchemaError as exc:
        errors[path] = f"not a valid JSON Schema: {exc.message}"
        return
    if value.get("type", "object") != "object":
        errors[f"{path}.type"] = "tool parameters must be an object schema"


# -- conditions (routing and handoffs) ----------------------------------------------------


def _validate_hours(path: str, hours: Any, errors: Errors) -> None:
    if not isinstance(hours, dict):
        errors[path] = "must be a mapping with timezone, days, open and close"
        return
    _unknown_keys(path, hours, _HOURS_KEYS, errors)
    tz = hours.get("timezone")
    if not isinstance(tz, str) or not tz:
        errors[f"{path}.timezone"] = "is required (an IANA name such as America/New_York)"
    else:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            errors[f"{path}.timezone"] = f"unknown timezone {tz!r}"
    days = hours.get("days", list(WEEKDAYS[:5]))
    if not isinstance(days, list) or not days or not all(
        isinstance(d, str) and d.lower() in _DAY_NAMES for d in days
    ):
        errors[f"{path}.days"] = "must be a non-empty list of weekdays (mon, tue, ... sun)"
    else:
        # Stored in one form so the router compares three-letter names only.
        hours["days"] = [_DAY_NAMES[d.lower()] for d in days]
    times = {}
    for key, default in (("open", "09:00"), ("close", "17:00")):
        value = hours.get(key, default)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 24 * 60:
            # YAML 1.1 reads an unquoted 18:00 as the sexagesimal 1080 (minutes).
            value = hours[key] = f"{value // 60:02d}:{value % 60:02d}"
        if not isinstance(value, str) or not _HHMM.fullmatch(value) or (
            key == "open" and value == "24:00"
        ):
            errors[f"{path}.{key}"] = "must be a time HH:MM (24-hour, quoted in YAML)"
        times[key] = value
    if times["open"] == times["close"] and f"{path}.open" not in errors:
        errors[f"{path}.close"] = "must differ from open"
    holidays = hours.get("holidays", []) or []
    if not isinstance(holidays, list):
        errors[f"{path}.holidays"] = "must be a list of dates YYYY-MM-DD"
    else:
        for i, day in enumerate(holidays):
            try:
                date.fromisoformat(str(day))
            except ValueError:
                errors[f"{path}.holidays[{i}]"] = "must be a date YYYY-MM-DD"
        # YAML turns unquoted dates into date objects: keep ISO strings.
        hours["holidays"] = [str(d) for d in holidays]


def _validate_when(path: str, when: Any, errors: Errors) -> None:
    if not isinstance(when, dict) or not any(k in when for k in _WHEN_KEYS):
        errors[path] = f"is required: a mapping with at least one of {', '.join(_WHEN_KEYS)}"
        return
    _unknown_keys(path, when, frozenset(_WHEN_KEYS), errors)
    if "keywords" in when:
        _string_list(f"{path}.keywords", when["keywords"], errors)
    if "pattern" in when:
        pattern = when["pattern"]
        if not isinstance(pattern, str) or not pattern:
            errors[f"{path}.pattern"] = "must be a non-empty regular expression"
        elif len(pattern) > limits.MAX_ROUTING_PATTERN_CHARS:
            errors[f"{path}.pattern"] = (
                f"is longer than {limits.MAX_ROUTING_PATTERN_CHARS} characters"
            )
        else:
            try:
                re.compile(pattern)
            except re.error as exc:
                errors[f"{path}.pattern"] = f"not a valid regular expression: {exc}"
    if "mode" in when:
        mode = when["mode"]
        if not (isinstance(mode, str) and mode) and not (
            isinstance(mode, list) and mode and all(isinstance(m, str) and m for m in mode)
        ):
            errors[f"{path}.mode"] = "must be a mode name or a list of mode names"
    if "outside_hours" in when:
        _validate_hours(f"{path}.outside_hours", when["outside_hours"], errors)


def _rules(key: str, value: Any, known: frozenset[str], errors: Errors,
           check: Callable[[str, dict[str, Any]], None]) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        errors[key] = "must be a list of rules"
        return []
    rules = []
    for i, rule in enumerate(value):
        path = f"{key}[{i}]"
        if not isinstance(rule, dict):
            errors[path] = "must be a mapping"
            continue
        _unknown_keys(path, rule, known, errors)
        _validate_when(f"{path}.when", rule.get("when"), errors)
        for text_key in ("name", "team", "action", "message", "reason"):
            if text_key in rule and not isinstance(rule[text_key], str):
                errors[f"{path}.{text_key}"] = "must be a string"
        check(path, rule)
        rules.append(rule)
    return rules


# -- provider and tools -------------------------------------------------------------------


def _validate_provider(kind: str, options: dict[str, Any], errors: Errors) -> None:
    if kind == "kb":
        _unknown_keys("provider", options, KB_OPTIONS | {"kind"}, errors)
        delay = options.get("word_delay_ms", 0)
        if not _is_number(delay) or delay < 0:
            errors["provider.word_delay_ms"] = "must be a number of milliseconds >= 0"
        floor = options.get("answer_floor", 0.3)
        if not _is_number(floor) or not 0 <= floor <= 1:
            errors["provider.answer_floor"] = "must be a number between 0 and 1"
    elif kind == "openai":
        from core.providers.openai import OpenAIConfig

        # Shape only: the key may live in the serving machine's environment, not here.
        env = {str(options.get("api_key_env") or "OPENAI_API_KEY"): "set-at-runtime"}
        try:
            OpenAIConfig.from_options(options, env)
        except ValueError as exc:
            name, _, message = str(exc).partition(": ")
            errors[f"provider.{name}"] = message or str(exc)
    elif kind == "scripted":
        checks: dict[str, tuple[Callable[[Any], bool], str]] = {
            "reply": (lambda v: isinstance(v, str), "must be a string"),
            "delay_ms": (lambda v: _is_number(v) and v >= 0, "must be a number >= 0"),
            "repeat": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                       "must be an integer >= 1"),
            "args_chunk": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                           "must be an integer >= 1"),
            "confidence": (lambda v: _is_number(v) and 0 <= v <= 1,
                           "must be a number between 0 and 1"),
            "tool_calls": (lambda v: isinstance(v, list) and all(
                isinstance(c, dict) and isinstance(c.get("name"), str) for c in v),
                "must be a list of {name, arguments}"),
            "actions": (lambda v: isinstance(v, list) and all(
                isinstance(a, dict) and isinstance(a.get("type"), str) for a in v),
                "must be a list of {type, payload}"),
        }
        for key, (ok, message) in checks.items():
            if key in options and not ok(options[key]):
                errors[f"provider.{key}"] = message


def _as_tool(index: int, item: Any, errors: dict[str, str]) -> dict[str, Any] | None:
    path = f"tools[{index}]"
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict):
        errors[path] = "must be a tool name or a mapping"
        return None
    name = item.get("name")
    if not isinstance(name, str) or not name:
        errors[f"{path}.name"] = "is required"
        return None
    kind = item.get("kind", "builtin" if name in BUILTIN_TOOLS else "")
    if kind not in TOOL_KINDS:
        errors[f"{path}.kind"] = (
            "is required for a tool that is not built in: webhook or client"
            if not kind else "must be builtin, webhook or client"
        )
        return None
    _unknown_keys(path, item, _TOOL_KEYS[kind], errors)
    if kind == "builtin" and name not in BUILTIN_TOOLS:
        errors[f"{path}.name"] = f"unknown built-in tool; one of {', '.join(BUILTIN_TOOLS)}"
    elif kind != "builtin" and not _TOOL_NAME.fullmatch(name):
        errors[f"{path}.name"] = "must be 1-64 letters, digits, underscores or hyphens"
    if "description" in item and not isinstance(item["description"], str):
        errors[f"{path}.description"] = "must be a string"
    if kind in ("webhook", "client") and "parameters" in item:
        _json_schema(f"{path}.parameters", item["parameters"], errors)
    if kind == "webhook":
        _validate_webhook(path, item, errors)
    return {**item, "kind": kind}


def _validate_webhook(path: str, item: dict[str, Any], errors: Errors) -> None:
    url = item.get("url")
    if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url):
        errors[f"{path}.url"] = "must be an http(s) URL"
    timeout = item.get("timeout_s", limits.DEFAULT_WEBHOOK_TIMEOUT_S)
    if not _is_number(timeout) or not 0 < timeout <= limits.MAX_WEBHOOK_TIMEOUT_S:
        errors[f"{path}.timeout_s"] = (
            f"must be a number of seconds, more than 0 and at most "
            f"{limits.MAX_WEBHOOK_TIMEOUT_S:g}"
        )
    if "secret" in item and "secret_env" in item:
        errors[f"{path}.secret"] = "give either secret or secret_env, not both"
    if "secret" in item and (not isinstance(item["secret"], str) or not item["secret"]):
        errors[f"{path}.secret"] = "must be a non-empty string"
    if "secret_env" in item and (
        not isinstance(item["secret_env"], str) or not _ENV_NAME.fullmatch(item["secret_env"])
    ):
        errors[f"{path}.secret_env"] = "must be an environment variable name"
    headers = item.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        errors[f"{path}.headers"] = "must be a mapping of header name to string value"


# -- the whole definition -----------------------------------------------------------------


def parse_agent(
    data: Any, base_dir: Path | None = None, *, check_folder: bool = True
) -> AgentDefinition:
    """Validate a parsed YAML mapping; raise AgentDefinitionError listing every bad field.

    A relative knowledge base is resolved against `base_dir`. `check_folder=False` skips
    the filesystem check (a stored definition is read on every turn; a missing folder is
    the turn's error, not the definition's)."""
    errors: dict[str, str] = {}
    if not isinstance(data, dict):
        raise AgentDefinitionError({"": "an agent definition must be a mapping"})
    _unknown_keys("", data, TOP_LEVEL_KEYS, errors)
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        errors["name"] = "is required"
        name = ""
    slug = data.get("slug") or slugify(name or "agent")
    if not isinstance(slug, str) or not _SLUG.fullmatch(slug) or len(slug) > MAX_SLUG_LENGTH:
        errors["slug"] = "must be lowercase letters, digits and single hyphens (at most 64)"
    provider_raw = data.get("provider", "kb")
    if isinstance(provider_raw, str):
        provider_raw = {"kind": provider_raw}
    if not isinstance(provider_raw, dict):
        errors["provider"] = "must be a provider kind or a mapping with `kind`"
        provider_raw = {"kind": "kb"}
    kind = provider_raw.get("kind", "kb")
    options = {k: v for k, v in provider_raw.items() if k != "kind"}
    if kind not in PROVIDER_KINDS:
        errors["provider.kind"] = f"must be one of {', '.join(PROVIDER_KINDS)}"
    else:
        _validate_provider(kind, options, errors)
    kb = data.get("knowledge_base", "")
    kb_url = ""
    if isinstance(kb, dict):
        _unknown_keys("knowledge_base", kb, frozenset({"path", "url"}), errors)
        kb_url = kb.get("url", "") or ""
        if not isinstance(kb_url, str) or (kb_url and not kb_url.startswith(("http://",
                                                                            "https://"))):
            errors["knowledge_base.url"] = "must be an http(s) URL (article links start with it)"
            kb_url = ""
        kb = kb.get("path", "")
    if kb is None:
        kb = ""
    if not isinstance(kb, str):
        errors["knowledge_base"] = "must be a folder path"
        kb = ""
    if kb:
        kb_path = Path(kb)
        if not kb_path.is_absolute() and base_dir is not None:
            kb_path = base_dir / kb_path
        if check_folder and not kb_path.is_dir():
            errors["knowledge_base"] = f"folder not found: {kb}"
        kb = str(kb_path.resolve())
    if kind == "kb" and not kb and "knowledge_base" not in errors:
        errors["knowledge_base"] = "is required for the kb provider"
    tools_raw = data.get("tools", []) or []
    tools: list[dict[str, Any]] = []
    if not isinstance(tools_raw, list):
        errors["tools"] = "must be a list"
    else:
        seen: dict[str, int] = {}
        for i, item in enumerate(tools_raw):
            tool = _as_tool(i, item, errors)
            if tool is not None:
                if tool["name"] in seen:
                    errors[f"tools[{i}].name"] = (
                        f"duplicate tool name (also tools[{seen[tool['name']]}])"
                    )
                seen.setdefault(tool["name"], i)
                tools.append(tool)

    def check_routing(path: str, rule: dict[str, Any]) -> None:
        if "team" in rule and isinstance(rule["team"], str) and not rule["team"].strip():
            errors[f"{path}.team"] = "must not be empty"

    def check_handoff(path: str, rule: dict[str, Any]) -> None:
        target = rule.get("to")
        if not isinstance(target, str) or not target:
            errors[f"{path}.to"] = "is required: the slug of another agent of the organisation"
        elif target == slug:
            errors[f"{path}.to"] = "an agent cannot hand off to itself"

    routing = _rules("routing", data.get("routing"), _ROUTING_KEYS, errors, check_routing)
    handoffs = _rules("handoffs", data.get("handoffs"), _HANDOFF_KEYS, errors, check_handoff)
    flows = data.get("flows", {}) or {}
    if not isinstance(flows, dict):
        errors["flows"] = "must be a mapping of intent name to flow"
        flows = {}
    else:
        from core.flows.definition import validate_flows

        errors.update(validate_flows(flows, [str(t["name"]) for t in tools]))
    threshold = data.get("confidence_threshold", 0.5)
    if not _is_number(threshold) or not 0 <= threshold <= 1:
        errors["confidence_threshold"] = "must be a number between 0 and 1"
        threshold = 0.5
    for key in ("description", "instructions"):
        if not isinstance(data.get(key, "") or "", str):
            errors[key] = "must be a string"
    if not isinstance(data.get("active", False), bool):
        errors["active"] = "must be true or false"
    if errors:
        raise AgentDefinitionError(errors)
    return AgentDefinition(
        name=name,
        slug=slug,
        provider=ProviderConfig(kind=kind, options=options),
        description=data.get("description", "") or "",
        instructions=data.get("instructions", "") or "",
        knowledge_base=kb,
        knowledge_base_url=kb_url,
        tools=tuple(tools),
        routing=tuple(routing),
        flows=flows,
        handoffs=tuple(handoffs),
        confidence_threshold=float(threshold),
        active=bool(data.get("active", False)),
        raw=data,
    )


def load_agent_file(path: Path) -> AgentDefinition:
    """Read and validate one YAML agent file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise AgentDefinitionError({"": f"not valid YAML: {exc}"}) from exc
    return parse_agent(data, base_dir=path.parent)
