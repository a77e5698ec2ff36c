"""A hypothesis state machine drives one conversation over gRPC through random sends,
stops, disconnects, reattaches, idempotent replays and core restarts, and checks the
stored transcript (and every replay) against a model of what the client was told.

The servers are real (core + shim on ephemeral ports); they run on an event loop in a
background thread so hypothesis' synchronous rules can drive them. Bounded: a few
examples of a few steps each (seconds).
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from harness import Harness, auth
from switchboard.v1 import chat_pb2, events_pb2

T = TypeVar("T")
WORDS = st.sampled_from(["alpha", "beta", "gamma", "delta", "omega"])
REPLY_REPEAT = 30  # "echo <message> " 30 times: long enough to stop or leave mid-way
STEP_TIMEOUT_S = 30


@dataclass
class Told:
    """One turn as the client saw it."""

    message: str
    text: str
    status: str  # "completed", "stopped", or "left" (the client disconnected)


def reply_for(message: str) -> str:
    return f"echo {message} " * REPLY_REPEAT


class ConversationMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.tmp = tempfile.TemporaryDirectory()
        self.sb: Harness | None = None
        self.conversation = ""
        self.told: list[Told] = []
        self.keys: dict[str, tuple[str, str, str]] = {}  # key → (message, turn id, text)
        self.counter = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(STEP_TIMEOUT_S)

    @property
    def harness(self) -> Harness:
        assert self.sb is not None
        return self.sb

    async def _start(self) -> None:
        self.sb = await Harness.start(Path(self.tmp.name))
        await self.sb.scripted_agent(reply="echo {message} " * REPLY_REPEAT, delay_ms=2)

    @initialize()
    def start(self) -> None:
        self.run(self._start())

    def teardown(self) -> None:
        if self.sb is not None:
            self.run(self.sb.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
        self.tmp.cleanup()

    def _turn(self, message: str, key: str = "") -> chat_pb2.TurnInput:
        return chat_pb2.TurnInput(message=message, agent="scripted",
                                  conversation_id=self.conversation, idempotency_key=key)

    async def _stream(self, turn: chat_pb2.TurnInput, stop_after: int = 0,
                      leave_after: int = 0) -> tuple[str, str, str]:
        """(turn id, text told, terminal kind) of one StreamChat."""
        call = self.harness.chat.StreamChat(chat_pb2.StreamChatRequest(turn=turn),
                                            metadata=auth())
        text, turn_id, deltas = "", "", 0
        async for reply in call:
            event = reply.event
            kind = event.WhichOneof("kind")
            turn_id = turn_id or event.turn_id
            if not self.conversation:
                self.conversation = event.conversation_id
            if kind == "text_delta":
                text += event.text_delta.text
                deltas += 1
                if leave_after and deltas == leave_after:
                    call.cancel()
                    live = self.harness.core.engine.live.get(self.conversation)
                    if live is not None:
                        await asyncio.wait_for(live.finished.wait(), STEP_TIMEOUT_S)
                    return turn_id, text, "left"
                if stop_after and deltas == stop_after:
                    await self.harness.chat.StopTurn(chat_pb2.StopTurnRequest(
                        conversation_id=self.conversation), metadata=auth())
            elif kind == "completed":
                stopped = event.completed.status == events_pb2.TURN_STATUS_STOPPED
                assert event.completed.text == text
                return turn_id, text, "stopped" if stopped else "completed"
        raise AssertionError("stream ended without a terminal event")

    @rule(message=WORDS, keyed=st.booleans())
    def send(self, message: str, keyed: bool) -> None:
        key = ""
        if keyed:
            self.counter += 1
            key = f"k-{self.counter}"
        turn_id, text, kind = self.run(self._stream(self._turn(message, key)))
        assert kind == "completed" and text == reply_for(message)
        self.told.append(Told(message, text, kind))
        if key:
            self.keys[key] = (message, turn_id, text)

    @rule(message=WORDS, after=st.integers(min_value=1, max_value=10))
    def send_and_stop(self, message: str, after: int) -> None:
        _, text, kind = self.run(self._stream(self._turn(message), stop_after=after))
        # A stop can lose the race with the end of a short reply: either is fine, but the
        # stored turn must be what the client was told.
        assert kind in ("stopped", "completed")
        assert reply_for(message).startswith(text) and len(text) >= after
        self.told.append(Told(message, text, kind))

    @rule(message=WORDS, after=st.integers(min_value=1, max_value=10))
    def send_and_disconnect(self, message: str, after: int) -> None:
        _, text, kind = self.run(self._stream(self._turn(message), leave_after=after))
        self.told.append(Told(message, text, kind))

    @precondition(lambda self: bool(self.keys))
    @rule(data=st.data())
    def replay_key(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.keys)))
        message, turn_id, text = self.keys[key]
        replayed_id, replayed, kind = self.run(self._stream(self._turn(message, key)))
        assert (replayed_id, replayed, kind) == (turn_id, text, "completed")

    @precondition(lambda self: bool(self.told))
    @rule()
    def reattach(self) -> None:
        async def resume() -> str:
            call = self.harness.chat.ResumeStream(chat_pb2.ResumeStreamRequest(
                conversation_id=self.conversation, latest_turn=True), metadata=auth())
            return "".join([r.event.text_delta.text async for r in call
                            if r.event.HasField("text_delta")])

        text = self.run(resume())
        last = self.told[-1]
        if last.status == "left":
            assert text.startswith(last.text)
            last.text, last.status = text, "stored"
        else:
            assert text == last.text

    @rule()
    def restart(self) -> None:
        self.run(self.harness.stop())
        self.sb = None
        self.run(self._start())

    @invariant()
    def transcript_matches_what_the_client_was_told(self) -> None:
        if self.sb is None or not self.conversation:
            return

        async def listed() -> list[tuple[str, str]]:
            reply = await self.harness.chat.ListMessages(chat_pb2.ListMessagesRequest(
                conversation_id=self.conversation, page_size=200), metadata=auth())
            return [(m.role, m.content) for m in reply.messages]

        try:
            messages = self.run(listed())
        except grpc.aio.AioRpcError as exc:  # pragma: no cover - reported as a failure
            raise AssertionError(f"ListMessages failed: {exc.code()}") from exc
        users = [c for r, c in messages if r == "user"]
        assistants = [c for r, c in messages if r == "assistant"]
        assert users == [t.message for t in self.told]
        assert len(assistants) == len(self.told)
        for told, stored in zip(self.told, assistants, strict=True):
            if told.status == "left":
                assert stored.startswith(told.text)
            else:
                assert stored == told.text


ConversationMachine.TestCase.settings = settings(
    max_examples=8, stateful_step_count=10, deadline=None,
    suppress_health_check=[HealthCheck.too_slow], derandomize=True,
)
test_conversation = ConversationMachine.TestCase
