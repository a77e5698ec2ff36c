"""Agent files: the examples and demo agents load, every section is validated with errors
named by field, limits hold at the boundary, and `switchboard agents apply` reports them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from core import limits
from core.agents.definition import AgentDefinitionError, load_agent_file, parse_agent
from core.demo.seed import demo_dir

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "agents"


def errors_of(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(AgentDefinitionError) as info:
        parse_agent({"name": "Test", "provider": "scripted", **data})
    return info.value.errors


@pytest.mark.parametrize("kind", ["kb", "openai", "scripted"])
def test_each_provider_has_a_valid_example(kind: str) -> None:
    definition = load_agent_file(EXAMPLES / f"{kind}-agent.yaml")
    assert definition.provider.kind == kind


def test_openai_example_is_the_kb_example_with_one_line_changed() -> None:
    kb_lines = (EXAMPLES / "kb-agent.yaml").read_text().splitlines()
    openai_lines = (EXAMPLES / "openai-agent.yaml").read_text().splitlines()
    strip = [line for line in kb_lines if not line.startswith("#")]
    changed = [(a, b) for a, b in zip(
        strip, [line for line in openai_lines if not line.startswith("#")], strict=True
    ) if a != b]
    assert changed == [("provider: kb", "provider: {kind: openai, model: gpt-4o-mini}")]


def test_demo_agents_load_with_their_routing_and_handoffs() -> None:
    agents = {p.stem: load_agent_file(p) for p in (demo_dir() / "agents").glob("*.yaml")}
    assert agents["support-agent"].active and agents["support-agent"].routing
    assert [h["to"] for h in agents["sales-bot"].handoffs] == ["support-agent"]


def test_every_bad_field_is_reported_at_once() -> None:
    assert set(errors_of({"slug": "Not A Slug"})) == {"slug"}
    errors = errors_of({
        "confidence_threshold": 1.5,
        "tools": ["search_knowledge", {"name": "teleport"}, {"name": "x", "kind": "builtin"},
                  "search_knowledge"],
        "routing": [{"team": "billing"}, "not a rule"],
        "handoffs": [{"to": "test", "when": {"mode": "chat"}}],
        "active": "yes",
        "colour": "blue",
    })
    assert errors == {
        "confidence_threshold": "must be a number between 0 and 1",
        "tools[1].kind": "is required for a tool that is not built in: webhook or client",
        "tools[2].name": errors["tools[2].name"],
        "tools[3].name": "duplicate tool name (also tools[0])",
        "routing[0].when": errors["routing[0].when"],
        "routing[1]": "must be a mapping",
        "handoffs[0].to": "an agent cannot hand off to itself",
        "active": "must be true or false",
        "colour": errors["colour"],
    }
    assert errors["colour"].startswith("unknown field")


def test_provider_options_are_checked_per_kind() -> None:
    assert errors_of({"provider": {"kind": "gpt"}}) == {
        "provider.kind": "must be one of kb, openai, scripted"}
    assert set(errors_of({"provider": {"kind": "openai"}})) == {"provider.model"}
    assert set(errors_of({"provider": {"kind": "openai", "model": "m", "temprature": 1}})) == {
        "provider.temprature"}
    assert set(errors_of({"provider": {"kind": "scripted", "delay_ms": -1}})) == {
        "provider.delay_ms"}
    kb = str(demo_dir() / "kb")
    assert set(errors_of({"provider": {"kind": "kb", "speed": 3}, "knowledge_base": kb})) == {
        "provider.speed"}
    assert set(errors_of({"provider": "kb"})) == {"knowledge_base"}


def test_openai_key_is_not_needed_to_validate() -> None:
    # The key lives on the serving machine; validating the file must not depend on it.
    definition = parse_agent({"name": "LLM", "provider": {
        "kind": "openai", "model": "gpt-4o-mini", "api_key_env": "NOT_SET_ANYWHERE_XYZ"}})
    assert definition.provider.options["model"] == "gpt-4o-mini"


def test_webhook_tools() -> None:
    errors = errors_of({"tools": [
        {"name": "bad name!", "kind": "webhook", "url": "https://x.example"},
        {"name": "hook", "kind": "webhook", "url": "ftp://x", "secret": "a", "secret_env": "B",
         "headers": {"X": 1}, "parameters": {"type": "string"}, "retries": 3},
    ]})
    assert set(errors) == {
        "tools[0].name", "tools[1].url", "tools[1].secret", "tools[1].headers",
        "tools[1].parameters.type", "tools[1].retries",
    }
    assert errors_of({"tools": [{"name": "h", "kind": "webhook", "url": "https://x.example",
                                 "parameters": {"type": "object", "required": "id"}}]}) == {
        "tools[0].parameters": errors_of({"tools": [{
            "name": "h", "kind": "webhook", "url": "https://x.example",
            "parameters": {"type": "object", "required": "id"}}]})["tools[0].parameters"]}


@pytest.mark.parametrize(("timeout", "ok"), [
    (limits.MAX_WEBHOOK_TIMEOUT_S, True),
    (limits.MAX_WEBHOOK_TIMEOUT_S + 1, False),
    (0.5, True),
    (0, False),
    (True, False),
])
def test_webhook_timeout_boundary(timeout: float, ok: bool) -> None:
    data = {"name": "T", "provider": "scripted", "tools": [
        {"name": "h", "kind": "webhook", "url": "https://x.example", "timeout_s": timeout}]}
    if ok:
        assert parse_agent(data).tools[0]["timeout_s"] == timeout
    else:
        assert set(errors_of(data)) == {"tools[0].timeout_s"}


@pytest.mark.parametrize(("length", "ok"), [
    (limits.MAX_ROUTING_PATTERN_CHARS, True),
    (limits.MAX_ROUTING_PATTERN_CHARS + 1, False),
])
def test_routing_pattern_length_boundary(length: int, ok: bool) -> None:
    rule = {"when": {"pattern": "a" * length}, "team": "t"}
    if ok:
        assert parse_agent({"name": "T", "provider": "scripted", "routing": [rule]}).routing
    else:
        assert set(errors_of({"routing": [rule]})) == {"routing[0].when.pattern"}


def test_conditions() -> None:
    errors = errors_of({"routing": [
        {"when": {"pattern": "(unclosed"}, "team": "t"},
        {"when": {"mode": ["chat", 3]}, "team": "t"},
        {"when": {"keyword": ["typo"]}, "team": "t"},
        {"when": {"outside_hours": {"timezone": "Mars/Base", "days": ["funday"],
                                    "open": "9am", "close": "25:00",
                                    "holidays": ["tomorrow"]}}},
        {"when": {"outside_hours": {"timezone": "UTC", "open": "09:00", "close": "09:00"}}},
        {"when": {"mode": "chat"}, "team": ""},
    ]})
    assert set(errors) == {
        "routing[0].when.pattern", "routing[1].when.mode", "routing[2].when",
        "routing[3].when.outside_hours.timezone", "routing[3].when.outside_hours.days",
        "routing[3].when.outside_hours.open", "routing[3].when.outside_hours.close",
        "routing[3].when.outside_hours.holidays[0]", "routing[4].when.outside_hours.close",
        "routing[5].team",
    }


def test_yaml_quirks_in_business_hours_are_normalised() -> None:
    # Unquoted 18:00 is the YAML 1.1 integer 1080, an unquoted date is a date object,
    # and weekday names may be written in full.
    data = yaml.safe_load("""
        name: Hours
        provider: scripted
        routing:
          - when:
              outside_hours:
                timezone: Europe/Paris
                days: [Monday, tuesday, WED]
                open: 9:30
                close: 18:00
                holidays: [2026-12-25]
            team: support
    """)
    hours = parse_agent(data).routing[0]["when"]["outside_hours"]
    assert hours == {"timezone": "Europe/Paris", "days": ["mon", "tue", "wed"],
                     "open": "09:30", "close": "18:00", "holidays": ["2026-12-25"]}


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "launcher.cli", *args], env=env,
                          capture_output=True, text=True, timeout=30, check=False)


def test_cli_apply_check_reports_errors_by_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad\nprovider: {kind: openai}\n"
                   "tools:\n  - {name: h, kind: webhook, url: 'ftp://x'}\n")
    result = _cli("agents", "apply", str(bad), "--check")
    assert result.returncode == 2
    assert "invalid agent file:" in result.stderr
    assert "provider.model: is required" in result.stderr
    assert "tools[0].url: must be an http(s) URL" in result.stderr
    good = _cli("agents", "apply", str(EXAMPLES / "kb-agent.yaml"), "--check")
    assert good.returncode == 0 and good.stdout.startswith("ok: help-center (kb)")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    assert "not valid YAML" in _cli("agents", "apply", str(broken), "--check").stderr


def test_cli_apply_stores_the_agent_and_warns_about_missing_targets(tmp_path: Path) -> None:
    database = str(tmp_path / "switchboard.db")
    assert _cli("keys", "create", "--org", "acme", "--kind", "secret",
                "--database", database).returncode == 0
    result = _cli("agents", "apply", str(EXAMPLES / "kb-agent.yaml"), "--org", "acme",
                  "--database", database)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("applied agent help-center")
    assert "handoffs[0].to: no agent 'sales-bot'" in result.stderr
    # `agents list` takes no --database: it reads the data directory from the environment.
    listed = _cli("agents", "list", "--org", "acme",
                  env={**os.environ, "SWITCHBOARD_DATA_DIR": str(tmp_path)})
    assert "help-center" in listed.stdout
