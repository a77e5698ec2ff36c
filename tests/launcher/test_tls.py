"""TLS on the core's gRPC port and the shim's HTTP port, and a shim reaching a TLS core,
with or without a client certificate (issue #11). Certificates are made here, with the
openssl command line."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import aiohttp
import grpc
import pytest

from harness import SECRET, WIDGET, Harness, auth
from launcher.serve import ServeOptions
from shim.config import ShimConfig
from switchboard.v1 import chat_pb2, chat_pb2_grpc


def self_signed(folder: Path, name: str) -> tuple[str, str]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return str(cert), str(key)


def pem(path: str) -> bytes | None:
    return Path(path).read_bytes() if path else None


async def chat_over(channel: grpc.aio.Channel) -> str:
    reply = await chat_pb2_grpc.ChatServiceStub(channel).Chat(chat_pb2.ChatRequest(
        turn=chat_pb2.TurnInput(message="hi", agent="scripted")), metadata=auth(SECRET),
        timeout=10)
    return reply.completed.text


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mutual-tls"])
async def test_tls_core_and_shim(tmp_path: Path, mutual: bool) -> None:
    cert, key = self_signed(tmp_path, "server")
    client_cert, client_key = self_signed(tmp_path, "client") if mutual else ("", "")
    sb = await Harness.start(
        tmp_path,
        core_config={"tls_cert": cert, "tls_key": key, "tls_client_ca": client_cert},
        serve=ServeOptions(http_port=0, tls_cert=cert, tls_key=key, shim=ShimConfig(
            core_tls_ca=cert, core_tls_cert=client_cert, core_tls_key=client_key)),
    )
    try:
        await sb.scripted_agent(reply="over tls")
        # gRPC: TLS works, plain text does not.
        creds = grpc.ssl_channel_credentials(
            root_certificates=pem(cert), private_key=pem(client_key),
            certificate_chain=pem(client_cert))
        async with grpc.aio.secure_channel(sb.grpc_target, creds) as channel:
            assert await chat_over(channel) == "over tls"
        async with grpc.aio.insecure_channel(sb.grpc_target) as channel:
            with pytest.raises(grpc.aio.AioRpcError):
                await chat_over(channel)
        if mutual:  # TLS without the client certificate is refused too
            bare = grpc.ssl_channel_credentials(root_certificates=pem(cert))
            async with grpc.aio.secure_channel(sb.grpc_target, bare) as channel:
                with pytest.raises(grpc.aio.AioRpcError):
                    await chat_over(channel)
        # HTTPS to the shim, which reaches the core over TLS.
        context = ssl.create_default_context(cafile=cert)
        url = f"https://127.0.0.1:{sb.running.http_port}/api/sdk/chat"
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json={"message": "hi", "agent_id": "scripted"},
                                 headers={"Authorization": f"Bearer {WIDGET}"},
                                 ssl=context) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["text"] == "over tls"
            with pytest.raises(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{sb.running.http_port}/healthz") as r:
                    await r.read()
    finally:
        await sb.stop()
