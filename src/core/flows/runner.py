"""The step interpreter: runs a flow from a step until it waits, ends, hands off or fails.

The runner is pure apart from `FlowIO` (tools, the model, tickets), so it is the same on
every process: all it needs to continue later is `RunState`, which is JSON and stored
with the execution. Every step run counts against `MAX_STEPS_PER_EXECUTION` over the
execution's whole life, so a loop (`branch` back to an earlier step) always stops.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.events import ActionData, Routing, Usage
from core.flows import limits
from core.flows.definition import Flow, Step
from core.flows.inputs import normalize_expected
from core.flows.store import ExecutionStatus
from core.flows.templates import as_text, fill_value, lookup, placeholders, render
from core.flows.variables import compact_json_bytes

log = logging.getLogger("switchboard.flows")

UNTRUSTED_ROOTS = frozenset({"variables", "context", "input", "text"})


@dataclass(frozen=True, slots=True)
class Block:
    type: str
    id: str
    payload: dict[str, Any]
    meta: dict[str, Any]

    def as_text(self) -> str:
        """How the block reads in the transcript."""
        text = str(self.payload.get("text", ""))
        if self.type == "choices":
            labels = [str(o.get("label", "")) for o in self.payload.get("options", [])]
            return "Options: " + ", ".join(labels)
        return text


@dataclass(slots=True)
class RunState:
    """Everything needed to continue an execution (stored as JSON)."""

    step: str = ""  # the step to run next, or the ask step it waits at
    vars: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    untrusted: list[str] = field(default_factory=list)  # flow vars holding user input
    steps_run: int = 0
    blocks: int = 0
    input: Any = None

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "vars": self.vars, "context": self.context,
                "untrusted": self.untrusted, "steps_run": self.steps_run,
                "blocks": self.blocks, "input": self.input}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunState:
        return cls(step=str(data.get("step", "")), vars=dict(data.get("vars", {})),
                   context=dict(data.get("context", {})),
                   untrusted=list(data.get("untrusted", [])),
                   steps_run=int(data.get("steps_run", 0)), blocks=int(data.get("blocks", 0)),
                   input=data.get("input"))


@dataclass(slots=True)
class RunOutcome:
    status: str
    blocks: list[Block] = field(default_factory=list)
    expected_input: dict[str, Any] | None = None
    usage: Usage = field(default_factory=Usage)
    routing: Routing | None = None
    actions: list[ActionData] = field(default_factory=list)


class FlowIO(Protocol):
    """The side effects a flow can have; the engine provides them."""

    async def call_tool(self, name: str, args: dict[str, Any]) -> tuple[Any, bool]:
        """(result, is_error)."""
        ...

    async def generate(self, prompt: str) -> tuple[str, Usage]: ...

    async def handoff(self, team: str, subject: str) -> str:
        """Create a ticket for `team`; returns its id."""
        ...


class StepLimitReached(Exception):
    pass


def _compare(op: str, value: Any, operand: Any) -> bool:
    if op == "equals":
        return bool(value == operand)
    if op == "not_equals":
        return bool(value != operand)
    if op == "in":
        return value in operand
    if op == "not_in":
        return value not in operand
    if op == "exists":
        present = value is not None and value != ""
        return present == bool(operand)
    if op == "matches":
        return re.search(str(operand), as_text(value)) is not None
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            value = float(str(value))
        except ValueError:
            return False
    if op == "gt":
        return bool(value > operand)
    if op == "gte":
        return bool(value >= operand)
    if op == "lt":
        return bool(value < operand)
    return bool(value <= operand)  # lte


def evaluate(cond: dict[str, Any], scope: dict[str, Any]) -> bool:
    if "all" in cond:
        return all(evaluate(c, scope) for c in cond["all"])
    if "any" in cond:
        return any(evaluate(c, scope) for c in cond["any"])
    if "not" in cond:
        return not evaluate(cond["not"], scope)
    op = next(k for k in cond if k != "var")
    return _compare(op, lookup(scope, str(cond["var"])), cond[op])


class Runner:
    """Runs one flow for one execution; `state` is updated in place."""

    def __init__(self, flow: Flow, state: RunState, io: FlowIO,
                 request_scope: dict[str, Any]) -> None:
        self.flow = flow
        self.state = state
        self.io = io
        self.request_scope = request_scope  # variables, context, ids: read-only data
        self.outcome = RunOutcome(status=ExecutionStatus.RUNNING)

    def scope(self) -> dict[str, Any]:
        return {**self.state.vars, **self.request_scope, "context": self.state.context,
                "input": self.state.input}

    def _tainted(self, template: Any) -> bool:
        names = placeholders(template) if isinstance(template, str) else []
        if isinstance(template, dict | list):
            names = placeholders(repr(template))
        roots = {n.split(".")[0] for n in names}
        return bool(roots & (UNTRUSTED_ROOTS | set(self.state.untrusted)))

    def _block(self, step: Step, type_: str, payload: dict[str, Any],
               untrusted: bool = False) -> None:
        self.state.blocks += 1
        meta: dict[str, Any] = {"format": "plain", "step": step.id}
        if untrusted:
            meta["untrusted"] = True
        self.outcome.blocks.append(Block(type_, f"{step.id}-{self.state.blocks}", payload, meta))

    def _set_var(self, name: str, value: Any, untrusted: bool) -> None:
        self.state.vars[name] = value
        if untrusted and name not in self.state.untrusted:
            self.state.untrusted.append(name)
        elif not untrusted and name in self.state.untrusted:
            self.state.untrusted.remove(name)

    def answer(self, ask: Step, value: Any) -> Step | None:
        """Record the answer to the ask step the execution waited at; returns the next step."""
        self.state.input = value
        self._set_var(str(ask.config["into"]), value, untrusted=True)
        return self.flow.after(ask)

    async def run(self, step: Step | None) -> RunOutcome:
        try:
            while step is not None:
                if self.state.steps_run >= limits.MAX_STEPS_PER_EXECUTION:
                    raise StepLimitReached(step.id)
                self.state.steps_run += 1
                self.state.step = step.id
                step = await self._run_step(step)
                if self.outcome.status != ExecutionStatus.RUNNING:
                    return self.outcome
            self.outcome.status = ExecutionStatus.COMPLETED
        except StepLimitReached:
            log.warning("flow %s stopped at the step limit (%d)", self.flow.name,
                        limits.MAX_STEPS_PER_EXECUTION)
            self._fail("step_limit", "This conversation flow ran too many steps and was "
                       "stopped.")
        except Exception as exc:  # a failing step fails the execution, not the request
            log.warning("flow %s failed at step %s: %s", self.flow.name, self.state.step, exc)
            self._fail("step_failed", "Sorry, something went wrong in this conversation flow.")
        return self.outcome

    def fail(self, code: str, message: str) -> RunOutcome:
        """A fresh outcome failing the execution here with an `error` block (the engine's
        answer when a run breaks outside the steps, e.g. the store fails)."""
        self.outcome = RunOutcome(status=ExecutionStatus.RUNNING)
        self._fail(code, message)
        return self.outcome

    def _fail(self, code: str, message: str) -> None:
        self.state.blocks += 1
        self.outcome.blocks.append(Block(
            "error", f"{self.state.step or 'flow'}-{self.state.blocks}",
            {"code": code, "text": message}, {"format": "plain", "step": self.state.step},
        ))
        self.outcome.status = ExecutionStatus.FAILED

    async def _run_step(self, step: Step) -> Step | None:
        kind, config, scope = step.kind, step.config, self.scope()
        if kind == "say":
            if isinstance(config, str):
                config = {"text": config}
            payload = fill_value(dict(config.get("payload", {})), scope)
            if config.get("text"):
                payload["text"] = render(config["text"], scope)
            untrusted = self._tainted(config.get("text", "")) or self._tainted(
                config.get("payload", {}))
            self._block(step, str(config.get("type", "text")), payload, untrusted)
            return self.flow.after(step)
        if kind == "ask":
            self._block(step, "text", {"text": render(config["text"], scope)},
                        self._tainted(config["text"]))
            expected = normalize_expected(dict(config.get("input") or {"kind": "text"}))
            if expected["kind"] == "choice":
                self._block(step, "choices", {"options": expected["options"]})
            self.outcome.expected_input = expected
            self.outcome.status = ExecutionStatus.WAITING
            return None
        if kind == "set":
            for name, raw in config.items():
                if isinstance(raw, dict):
                    current = self.state.vars.get(name, 0)
                    base = current if isinstance(current, int | float) else 0
                    self._set_var(name, base + raw["add"], name in self.state.untrusted)
                else:
                    self._set_var(name, fill_value(raw, scope), self._tainted(raw))
            return self.flow.after(step)
        if kind == "branch":
            for rule in config["rules"]:
                if evaluate(rule["when"], scope):
                    return self.flow.step(rule["goto"])
            if config.get("else"):
                return self.flow.step(config["else"])
            return self.flow.after(step)
        if kind == "tool":
            if isinstance(config, str):
                config = {"name": config}
            args = fill_value(dict(config.get("args", {})), scope)
            result, is_error = await self.io.call_tool(str(config["name"]), args)
            if compact_json_bytes(result) > limits.MAX_TOOL_RESULT_JSON_BYTES:
                result, is_error = {"error": "tool result too large"}, True
            if config.get("into"):
                value = result if isinstance(result, dict) else {"value": result}
                self._set_var(str(config["into"]), {**value, "is_error": is_error}, False)
            return self.flow.after(step)
        if kind == "llm":
            if isinstance(config, str):
                config = {"prompt": config}
            text, usage = await self.io.generate(render(config["prompt"], scope))
            self.outcome.usage = self.outcome.usage + usage
            if config.get("into"):
                self._set_var(str(config["into"]), text, untrusted=True)
            if config.get("say", True):
                self._block(step, "text", {"text": text}, untrusted=True)
            return self.flow.after(step)
        if kind == "handoff":
            config = config or {}
            team = render(str(config.get("team", "support")), scope) or "support"
            subject = render(str(config.get("subject", f"Flow {self.flow.name}")), scope)
            text = render(str(config.get(
                "text", f"I'm handing you over to our {team} team; someone will reply here "
                        "shortly.")), scope)
            ticket_id = await self.io.handoff(team, subject[:500])
            self._block(step, "handoff", {"text": text, "team": team, "ticket_id": ticket_id},
                        self._tainted(config.get("text", "")))
            self.outcome.routing = Routing("route_to_team", ticket_id, team)
            self.outcome.actions.append(ActionData(
                "route_to_team", {"team": team, "ticket_id": ticket_id}))
            self.outcome.status = ExecutionStatus.HANDED_OFF
            return None
        # end
        text = config if isinstance(config, str) else (
            config.get("text", "") if isinstance(config, dict) else "")
        if text:
            self._block(step, "text", {"text": render(text, scope)}, self._tainted(text))
        self.outcome.status = ExecutionStatus.COMPLETED
        return None
