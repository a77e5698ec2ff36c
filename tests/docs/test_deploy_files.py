"""deploy/compose.yaml and deploy/nginx.conf stay in step with the code they configure
(no Docker here: nothing is built or pulled). The replica's command line parses with the
real `switchboard` parser and is allowed to run several workers; every SWITCHBOARD_*
variable it sets is one the code reads; the load balancer passes SSE unbuffered over
HTTP/1.1 keep-alive and gRPC over HTTP/2, and is the proxy the replicas trust."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import yaml

from launcher.cli import build_parser
from launcher.workers import refusal

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def test_the_replica_command_parses_and_may_run_its_workers() -> None:
    service = compose()["services"]["switchboard"]
    ns = build_parser().parse_args(service["command"])
    assert ns.command == "serve" and ns.http_host == "0.0.0.0"
    env = service["environment"]
    workers = int(env["SWITCHBOARD_WORKERS"])
    assert workers > 1
    assert refusal(workers, env["SWITCHBOARD_DATABASE_URL"],
                   env["SWITCHBOARD_REDIS_URL"]) is None
    # SIGKILL only after the shutdown grace has had its chance.
    grace = float(ns.shutdown_grace)
    assert float(service["stop_grace_period"].rstrip("s")) > grace


def test_every_environment_variable_is_one_switchboard_reads() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "src").rglob("*.py"))
    for service in compose()["services"].values():
        for name in service.get("environment", {}):
            if name.startswith("SWITCHBOARD_"):
                assert f'"{name}"' in source, name


def test_the_load_balancer_is_the_trusted_proxy_and_reaches_both_ports() -> None:
    services = compose()["services"]
    lb_address = services["lb"]["networks"]["backend"]["ipv4_address"]
    ns = build_parser().parse_args(services["switchboard"]["command"])
    trusted = [ipaddress.ip_network(n) for n in ns.trusted_proxy]
    assert any(ipaddress.ip_address(lb_address) in net for net in trusted)
    conf = (DEPLOY / "nginx.conf").read_text()
    assert f"server switchboard:{ns.http_port} " in conf
    assert f"server switchboard:{ns.grpc_port} " in conf


def test_nginx_passes_sse_unbuffered_on_keepalive_and_grpc_over_http2() -> None:
    conf = re.sub(r"#.*", "", (DEPLOY / "nginx.conf").read_text())
    for directive in ("proxy_buffering off;", "proxy_http_version 1.1;",
                      'proxy_set_header Connection "";', "keepalive 64;", "http2 on;",
                      "grpc_pass grpc://switchboard_grpc;"):
        assert directive in conf, directive
    assert conf.count("{") == conf.count("}")
