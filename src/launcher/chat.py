"""`switchboard chat`: a terminal client that streams replies from the core over gRPC."""

from __future__ import annotations

import asyncio
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


async def run_chat(target: str, key: str, agent: str, message: str) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        try:
            if message:
                await _turn(stub, key, agent, message, "")
                return 0
            conversation_id = ""
            print("Type a message (Ctrl-D to quit).")
            while True:
                try:
                    # input() blocks; run it in a thread so the channel stays serviced.
                    line = (await asyncio.to_thread(input, "> ")).strip()
                except EOFError:
                    print()
                    return 0
                if line:
                    conversation_id = await _turn(stub, key, agent, line, conversation_id)
        except grpc.aio.AioRpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
