"""`switchboard chat`: a terminal client that streams replies from the core over gRPC."""

from __future__ import annotations

import asyncio
import os
import stat
import sys

import grpc

from switchboard.v1 import chat_pb2, chat_pb2_grpc


async def _turn(stub: chat_pb2_grpc.ChatServiceStub, key: str, agent: str, message: str,
                conversation_id: str) -> str:
    request = chat_pb2.StreamChatRequest(turn=chat_pb2.TurnInput(
        message=message, agent=agent, conversation_id=conversation_id, dialect="cli",
    ))
    call = stub.StreamChat(request, metadata=[("authorization", f"Bearer {key}")])
    notes: list[str] = []
    async for reply in call:
        event = reply.event
        kind = event.WhichOneof("kind")
        if kind == "turn_started":
            conversation_id = event.turn_started.conversation_id
        elif kind == "text_delta":
            sys.stdout.write(event.text_delta.text)
            sys.stdout.flush()
        elif kind == "action":
            payload = dict(event.action.payload)
            label = payload.get("title") or payload.get("reason") or ""
            notes.append(f"[{event.action.type}] {label}")
        elif kind == "routed":
            notes.append(f"[routed to {event.routed.team}: ticket {event.routed.ticket_id}]")
        elif kind == "agent_handoff":
            notes.append(f"[handed off: {event.agent_handoff.reason}]")
        elif kind == "interrupt":
            notes.append(f"[waiting for client tools: {', '.join(event.interrupt.tool_call_ids)}]")
        elif kind == "error":
            notes.append(f"[error {event.error.code}: {event.error.message}]")
        elif kind == "completed":
            notes.append(f"(confidence {event.completed.confidence:.2f})")
    # Notes go under the reply so they never split the streamed text.
    sys.stdout.write("\n" + "".join(f"  {note}\n" for note in notes))
    return conversation_id


# How long `switchboard chat` waits for the core before saying it is not running.
CONNECT_TIMEOUT_S = 3.0


class _Lines:
    """Lines from stdin without a thread: Ctrl-C cancels a pending read at once (a thread
    blocked in input() would hold the process until Enter)."""

    def __init__(self) -> None:
        self._reader: asyncio.StreamReader | None = None

    async def open(self) -> None:
        try:
            mode = os.fstat(sys.stdin.fileno()).st_mode
        except (OSError, ValueError):
            return
        if not (sys.stdin.isatty() or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            # A regular file or /dev/null (which epoll refuses): plain reads never wait.
            return
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        try:
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        except (ValueError, OSError):
            return
        self._reader = reader

    async def readline(self) -> str | None:
        """The next line (without its newline), None at end of input."""
        if self._reader is None:
            line = sys.stdin.readline()
            return line.rstrip("\n") if line else None
        raw = await self._reader.readline()
        return raw.decode("utf-8", "replace").rstrip("\n") if raw else None


async def _reachable(channel: grpc.aio.Channel) -> bool:
    try:
        await asyncio.wait_for(channel.channel_ready(), CONNECT_TIMEOUT_S)
    except TimeoutError:
        return False
    return True


def not_running(target: str) -> str:
    return (f"error: no Switchboard core answers at {target}. Start it with `make run` "
            f"(in the project folder), or point --core at a running one.")


async def run_chat(target: str, key: str, agent: str, message: str) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        if not await _reachable(channel):
            print(not_running(target), file=sys.stderr)
            return 1
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        try:
            if message:
                await _turn(stub, key, agent, message, "")
                return 0
            conversation_id = ""
            lines = _Lines()
            await lines.open()
            print("Type a message (Ctrl-D or Ctrl-C to quit).")
            while True:
                sys.stdout.write("> ")
                sys.stdout.flush()
                line = await lines.readline()
                if line is None:
                    print()
                    return 0
                if line.strip():
                    conversation_id = await _turn(stub, key, agent, line.strip(),
                                                  conversation_id)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                print(not_running(target), file=sys.stderr)
                return 1
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
