"""The `flows:` section of an agent definition: validation (errors named by field) and the
parsed model the runner interprets. Schema (docs/flow.md has the full reference):

```yaml
flows:
  order_status:                 # intent name, snake_case
    description: Check where an order is.
    steps:
      - id: ask_order           # optional; default step1, step2, ...
        ask: {text: "Your order number?", input: {kind: text, pattern: "..."}, into: order_id}
      - tool: {name: lookup_order, args: {order_id: "{{order_id}}"}, into: order}
      - branch:
          - when: {var: order.found, equals: true}
            goto: found
        else: not_found
      - id: found
        say: "Order {{order.order_id}} is {{order.status}}."
        next: done              # any step but branch/end may jump with `next`
      ...
```

Step kinds: say, ask, set, branch, tool, llm, handoff, end. Steps run in list order
unless `next`/`goto` says otherwise; running past the last step ends the execution.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from core.flows import limits
from core.flows.builtins import FLOW_TOOLS
from core.flows.inputs import INPUT_KINDS

STEP_KINDS = ("say", "ask", "set", "branch", "tool", "llm", "handoff", "end")
INTENT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
STEP_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
VAR_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# Names the template scope gives to request data; flow variables may not shadow them.
RESERVED_VARS = ("variables", "context", "input", "text", "intent", "conversation_id",
                 "execution_id")
OPERATORS = ("equals", "not_equals", "in", "not_in", "gt", "gte", "lt", "lte", "matches",
             "exists")


@dataclass(frozen=True, slots=True)
class Step:
    id: str
    kind: str
    config: Any
    next: str = ""


@dataclass(frozen=True, slots=True)
class Flow:
    name: str
    description: str
    steps: tuple[Step, ...]
    index: dict[str, int] = field(default_factory=dict)

    def step(self, step_id: str) -> Step | None:
        position = self.index.get(step_id)
        return self.steps[position] if position is not None else None

    def after(self, step: Step) -> Step | None:
        """The step that follows `step` when it does not jump."""
        if step.next:
            return self.step(step.next)
        position = self.index[step.id] + 1
        return self.steps[position] if position < len(self.steps) else None


class _Errors:
    def __init__(self) -> None:
        self.found: dict[str, str] = {}

    def add(self, path: str, message: str) -> None:
        self.found.setdefault(path, message)


def _check_var(errors: _Errors, path: str, name: Any) -> None:
    if not isinstance(name, str) or not VAR_NAME.fullmatch(name):
        errors.add(path, "must be a snake_case variable name")
    elif name in RESERVED_VARS:
        errors.add(path, f"{name!r} is reserved ({', '.join(RESERVED_VARS)})")


def _check_condition(errors: _Errors, path: str, cond: Any) -> None:
    if not isinstance(cond, dict):
        errors.add(path, "must be a mapping")
        return
    if "all" in cond or "any" in cond:
        key = "all" if "all" in cond else "any"
        items = cond[key]
        if not isinstance(items, list) or not items:
            errors.add(f"{path}.{key}", "must be a non-empty list of conditions")
            return
        for i, item in enumerate(items):
            _check_condition(errors, f"{path}.{key}[{i}]", item)
        return
    if "not" in cond:
        _check_condition(errors, f"{path}.not", cond["not"])
        return
    if not isinstance(cond.get("var"), str) or not cond["var"]:
        errors.add(f"{path}.var", "is required (a variable path such as order.status)")
    ops = [op for op in OPERATORS if op in cond]
    if len(ops) != 1:
        errors.add(path, f"needs exactly one operator: {', '.join(OPERATORS)}")
        return
    op = ops[0]
    if op in ("in", "not_in") and not isinstance(cond[op], list):
        errors.add(f"{path}.{op}", "must be a list")
    if op in ("gt", "gte", "lt", "lte") and (
        isinstance(cond[op], bool) or not isinstance(cond[op], int | float)
    ):
        errors.add(f"{path}.{op}", "must be a number")
    if op == "matches":
        try:
            re.compile(str(cond[op]))
        except re.error as exc:
            errors.add(f"{path}.matches", f"invalid regular expression: {exc}")


def _check_input(errors: _Errors, path: str, spec: Any) -> None:
    if spec is None:
        return
    if not isinstance(spec, dict):
        errors.add(path, "must be a mapping with `kind`")
        return
    kind = spec.get("kind", "text")
    if kind not in INPUT_KINDS:
        errors.add(f"{path}.kind", f"must be one of {', '.join(INPUT_KINDS)}")
    if kind == "choice":
        options = spec.get("options")
        if not isinstance(options, list) or not options:
            errors.add(f"{path}.options", "a choice needs a non-empty list of options")
        else:
            for i, option in enumerate(options):
                if isinstance(option, dict):
                    if not isinstance(option.get("value", option.get("label")), str):
                        errors.add(f"{path}.options[{i}]", "needs a string value or label")
                elif not isinstance(option, str):
                    errors.add(f"{path}.options[{i}]", "must be a string or {value, label}")
    for key in ("min", "max"):
        if key in spec and (isinstance(spec[key], bool)
                            or not isinstance(spec[key], int | float)):
            errors.add(f"{path}.{key}", "must be a number")
    for key in ("min_length", "max_length"):
        if key in spec and (isinstance(spec[key], bool) or not isinstance(spec[key], int)
                            or spec[key] < 0):
            errors.add(f"{path}.{key}", "must be a non-negative integer")
    if "pattern" in spec:
        try:
            re.compile(str(spec["pattern"]))
        except re.error as exc:
            errors.add(f"{path}.pattern", f"invalid regular expression: {exc}")


def _check_step(errors: _Errors, path: str, kind: str, config: Any,
                tool_names: set[str]) -> list[tuple[str, str]]:
    """Validate one step's body; returns (path, step id) pairs it jumps to."""
    jumps: list[tuple[str, str]] = []
    p = f"{path}.{kind}"
    if kind == "say":
        if isinstance(config, dict):
            if not isinstance(config.get("text", ""), str):
                errors.add(f"{p}.text", "must be a string")
            if not isinstance(config.get("type", "text"), str):
                errors.add(f"{p}.type", "must be a string")
            if "payload" in config and not isinstance(config["payload"], dict):
                errors.add(f"{p}.payload", "must be a mapping")
            if not config.get("text") and not config.get("payload"):
                errors.add(p, "needs `text` or `payload`")
        elif not isinstance(config, str) or not config:
            errors.add(p, "must be text or a mapping {text, type, payload}")
    elif kind == "ask":
        if not isinstance(config, dict):
            errors.add(p, "must be a mapping {text, input, into}")
            return jumps
        if not isinstance(config.get("text"), str) or not config["text"]:
            errors.add(f"{p}.text", "is required")
        _check_input(errors, f"{p}.input", config.get("input"))
        _check_var(errors, f"{p}.into", config.get("into"))
    elif kind == "set":
        if not isinstance(config, dict) or not config:
            errors.add(p, "must be a mapping of variable name to value")
            return jumps
        for name, value in config.items():
            _check_var(errors, f"{p}.{name}", name)
            if isinstance(value, dict) and set(value) != {"add"}:
                errors.add(f"{p}.{name}", "a mapping value must be {add: <number>}")
            elif isinstance(value, dict) and (isinstance(value["add"], bool)
                                              or not isinstance(value["add"], int | float)):
                errors.add(f"{p}.{name}.add", "must be a number")
    elif kind == "branch":
        rules = config
        if not isinstance(rules, list) or not rules:
            errors.add(p, "must be a non-empty list of {when, goto}")
            return jumps
        for i, rule in enumerate(rules):
            rp = f"{p}[{i}]"
            if not isinstance(rule, dict):
                errors.add(rp, "must be a mapping {when, goto}")
                continue
            _check_condition(errors, f"{rp}.when", rule.get("when"))
            jumps.append((f"{rp}.goto", rule.get("goto", "")))
    elif kind == "tool":
        if isinstance(config, str):
            config = {"name": config}
        if not isinstance(config, dict):
            errors.add(p, "must be a tool name or a mapping {name, args, into}")
            return jumps
        name = config.get("name")
        if not isinstance(name, str) or not name:
            errors.add(f"{p}.name", "is required")
        elif name not in FLOW_TOOLS and name not in tool_names:
            errors.add(f"{p}.name", f"unknown tool {name!r}: declare it under `tools:` or use "
                                    f"a flow tool ({', '.join(sorted(FLOW_TOOLS))})")
        if "args" in config and not isinstance(config["args"], dict):
            errors.add(f"{p}.args", "must be a mapping")
        if "into" in config:
            _check_var(errors, f"{p}.into", config["into"])
    elif kind == "llm":
        if isinstance(config, str):
            config = {"prompt": config}
        if not isinstance(config, dict) or not isinstance(config.get("prompt"), str):
            errors.add(f"{p}.prompt", "is required")
            return jumps
        if "into" in config:
            _check_var(errors, f"{p}.into", config["into"])
        if not isinstance(config.get("say", True), bool):
            errors.add(f"{p}.say", "must be true or false")
    elif kind == "handoff":
        if config is None:
            config = {}
        if not isinstance(config, dict):
            errors.add(p, "must be a mapping {team, subject, text}")
            return jumps
        for key in ("team", "subject", "text"):
            if key in config and not isinstance(config[key], str):
                errors.add(f"{p}.{key}", "must be a string")
    elif kind == "end" and not (config is None or isinstance(config, bool | str) or (
        isinstance(config, dict) and isinstance(config.get("text", ""), str)
    )):
        errors.add(p, "must be true, a text, or {text}")
    return jumps


def _flow_errors(errors: _Errors, name: str, flow: Any, tool_names: set[str]) -> None:
    path = f"flows.{name}"
    if not INTENT_NAME.fullmatch(name):
        errors.add(path, "intent names must match ^[a-z][a-z0-9_]{0,63}$")
    if not isinstance(flow, dict):
        errors.add(path, "must be a mapping {description, steps}")
        return
    if not isinstance(flow.get("description", ""), str):
        errors.add(f"{path}.description", "must be a string")
    steps = flow.get("steps")
    if not isinstance(steps, list) or not steps:
        errors.add(f"{path}.steps", "must be a non-empty list")
        return
    if len(steps) > limits.MAX_FLOW_STEPS_DEFINED:
        errors.add(f"{path}.steps", f"at most {limits.MAX_FLOW_STEPS_DEFINED} steps")
    ids: set[str] = set()
    jumps: list[tuple[str, str]] = []
    for i, step in enumerate(steps):
        sp = f"{path}.steps[{i}]"
        if not isinstance(step, dict):
            errors.add(sp, f"must be a mapping with one of {', '.join(STEP_KINDS)}")
            continue
        step_id = step.get("id", f"step{i + 1}")
        if not isinstance(step_id, str) or not STEP_ID.fullmatch(step_id):
            errors.add(f"{sp}.id", "must be a snake_case id")
        elif step_id in ids:
            errors.add(f"{sp}.id", f"duplicate step id {step_id!r}")
        else:
            ids.add(step_id)
        kinds = [k for k in STEP_KINDS if k in step]
        unknown = sorted(set(step) - {*STEP_KINDS, "id", "next", "else"})
        if unknown:
            errors.add(f"{sp}.{unknown[0]}", "unknown key")
        if len(kinds) != 1:
            errors.add(sp, f"needs exactly one of {', '.join(STEP_KINDS)}")
            continue
        kind = kinds[0]
        jumps.extend(_check_step(errors, sp, kind, step[kind], tool_names))
        if "else" in step:
            if kind != "branch":
                errors.add(f"{sp}.else", "only a branch has `else`")
            jumps.append((f"{sp}.else", step["else"]))
        if "next" in step:
            if kind in ("branch", "end", "handoff"):
                errors.add(f"{sp}.next", f"a {kind} step does not continue with `next`")
            jumps.append((f"{sp}.next", step["next"]))
    for jp, target in jumps:
        if not isinstance(target, str) or target not in ids:
            errors.add(jp, f"unknown step id {target!r}")


def validate_flows(raw: Any, tool_names: Iterable[str] = ()) -> dict[str, str]:
    """Errors by field path (`flows.<intent>.steps[2].ask.into`); empty when valid."""
    errors = _Errors()
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        return {"flows": "must be a mapping of intent name to flow"}
    names = set(tool_names)
    for name, flow in raw.items():
        _flow_errors(errors, str(name), flow, names)
    return errors.found


def parse_flows(raw: dict[str, Any]) -> dict[str, Flow]:
    """The parsed flows of an already validated `flows:` mapping."""
    flows: dict[str, Flow] = {}
    for name, body in (raw or {}).items():
        steps = []
        for i, step in enumerate(body.get("steps", [])):
            kind = next(k for k in STEP_KINDS if k in step)
            config = step[kind]
            if kind == "branch":
                config = {"rules": config, "else": step.get("else", "")}
            steps.append(Step(id=step.get("id", f"step{i + 1}"), kind=kind, config=config,
                              next=step.get("next", "")))
        flows[name] = Flow(
            name=name, description=str(body.get("description", "") or ""),
            steps=tuple(steps), index={s.id: i for i, s in enumerate(steps)},
        )
    return flows
