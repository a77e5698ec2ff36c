"""The `switchboard` command."""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from core.clientaddr import networks
from core.config import CoreConfig
from core.engine.turns import EngineConfig
from core.observability.logs import FORMATS, configure_logging
from core.store.factory import StoreURLError
from launcher.options import DATABASE_ENV, add_database_option

if TYPE_CHECKING:
    from launcher.serve import ServeOptions


# Commands that work without a database, or (serve) create theirs on first start.
_NO_STORE = frozenset({"serve", "chat"})


def _version() -> str:
    try:
        return importlib.metadata.version("switchboard")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "unknown"


def _config(ns: argparse.Namespace) -> CoreConfig:
    config = CoreConfig()
    # --database wins over $SWITCHBOARD_DATABASE_URL; with neither, the SQLite default.
    database = getattr(ns, "database", None) or os.environ.get(DATABASE_ENV, "").strip()
    if database:
        config = replace(config, database=database)
    if getattr(ns, "knowledge_root", None) is not None:
        config = replace(config, knowledge_root=ns.knowledge_root.resolve())
    if getattr(ns, "event_retention_days", None) is not None:
        if ns.event_retention_days < 0:
            raise SystemExit("error: --event-retention-days must be 0 (keep) or >= 1")
        config = replace(config, event_retention_days=ns.event_retention_days)
    if getattr(ns, "grpc_port", None) is not None:
        config = replace(config, port=ns.grpc_port)
    if getattr(ns, "grpc_host", None):
        config = replace(config, host=ns.grpc_host)
    if getattr(ns, "tls_cert", None) or getattr(ns, "tls_key", None):
        config = replace(config, tls_cert=ns.tls_cert, tls_key=ns.tls_key,
                         tls_client_ca=ns.tls_client_ca)
    if getattr(ns, "trusted_proxy", None):
        config = replace(config, trusted_proxies=tuple(ns.trusted_proxy))
    if getattr(ns, "redis", None):
        config = replace(config, redis_url=ns.redis)
    if ns.command == "serve" and _worker() is not None:
        config = replace(config, reuse_port=True)
    engine = EngineConfig()
    if getattr(ns, "detach_grace", None) is not None:
        engine = replace(engine, detach_grace_s=ns.detach_grace)
    if getattr(ns, "shutdown_grace", None) is not None:
        engine = replace(engine, shutdown_grace_s=ns.shutdown_grace)
    if getattr(ns, "interrupt_ttl", None) is not None:
        engine = replace(engine, interrupt_ttl_s=ns.interrupt_ttl)
    return replace(config, engine=engine)


def _worker() -> int | None:
    from launcher.workers import worker_index

    return worker_index()


def _workers(text: str) -> int:
    from launcher.workers import parse_workers

    try:
        return parse_workers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def _redis_url(text: str) -> str:
    from core.redis_limits import check_url

    if not text:
        return text  # the string default runs through `type` too: "" is "no Redis"
    try:
        return check_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
def _otlp_endpoint(text: str) -> str:
    from core.observability.tracing import traces_url

    if not text:
        return text  # argparse runs string defaults through `type` too: "" is "off"
    try:
        traces_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _add_security_flags(p: argparse.ArgumentParser) -> None:
    """TLS, trusted proxies and connection bounds (README "Security")."""
    p.add_argument("--tls-cert", default="", help="PEM certificate: serve TLS on the gRPC "
                   "port and the HTTP port (plain text stays the default on loopback)")
    p.add_argument("--tls-key", default="", help="PEM private key for --tls-cert")
    p.add_argument("--tls-client-ca", default="",
                   help="core: require gRPC client certificates signed by this CA")
    p.add_argument("--core-tls-ca", default="", help="shim: reach a TLS core, verifying "
                   "it with this CA bundle (default with --tls-cert: that certificate)")
    p.add_argument("--core-tls-cert", default="", help="shim: client certificate for the core")
    p.add_argument("--core-tls-key", default="", help="shim: key of --core-tls-cert")
    p.add_argument("--trusted-proxy", action="append", default=[], metavar="CIDR",
                   help="a proxy whose X-Forwarded-For names the client (repeatable)")
    p.add_argument("--request-head-timeout", type=_positive_seconds, default=None,
                   help="seconds a connection may take to send its request head (10)")
    p.add_argument("--max-connections", type=int, default=None,
                   help="open HTTP connections per process (2048, kept below the fd limit)")


def _serve_options(ns: argparse.Namespace) -> ServeOptions:
    from launcher.serve import ServeOptions
    from shim.config import ShimConfig

    shim = ShimConfig(
        trusted_proxies=networks(ns.trusted_proxy),
        core_tls_ca=ns.core_tls_ca or (ns.tls_cert if ns.role == "all" else ""),
        core_tls_cert=ns.core_tls_cert, core_tls_key=ns.core_tls_key,
    )
    if ns.request_head_timeout is not None:
        shim = replace(shim, request_head_timeout_s=ns.request_head_timeout)
    if ns.max_connections is not None:
        shim = replace(shim, max_connections=ns.max_connections)
    worker = _worker()
    # Only the first worker seeds the demo: N seeding at once would race on its rows.
    return ServeOptions(role=ns.role, demo=ns.demo and not worker, http_host=ns.http_host,
                        http_port=ns.http_port, core_target=ns.core, shim=shim,
                        tls_cert=ns.tls_cert, tls_key=ns.tls_key,
                        metrics_port=ns.metrics_port, otlp_endpoint=ns.otlp_endpoint,
                        reuse_port=worker is not None)


def _add_db(p: argparse.ArgumentParser) -> None:
    add_database_option(p)


def _add_knowledge_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--knowledge-root", type=Path, default=None,
                   help="folder agents' knowledge bases are stored relative to (default: "
                        "$SWITCHBOARD_KNOWLEDGE_ROOT or the current folder)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard", description="AI agent gateway.")
    parser.add_argument("--version", action="version", version=f"switchboard {_version()}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the core and the HTTP shim")
    serve.add_argument("--demo", action="store_true", help="seed the demo organisation")
    serve.add_argument("--role", choices=("all", "core", "shim"), default="all",
                       help="run the core and the shim (all, default), or one of them")
    serve.add_argument("--grpc-host", default=None,
                       help="address the core listens on (default 127.0.0.1)")
    serve.add_argument("--grpc-port", type=int, default=None,
                       help="port the core listens on (default 50051; 0 picks a free one)")
    serve.add_argument("--http-host", default="127.0.0.1",
                       help="address the shim (and --metrics-port) listens on")
    serve.add_argument("--http-port", type=int, default=int(os.environ.get("PORT", 8080)),
                       help="port the shim listens on (default $PORT or 8080)")
    serve.add_argument("--core", default="", help="core address for --role shim")
    serve.add_argument("--redis", type=_redis_url,
                       default=os.environ.get("SWITCHBOARD_REDIS_URL", ""),
                       metavar="redis://HOST:PORT/N",
                       help="share rate limits and stream caps with other replicas through "
                       "this Redis (default $SWITCHBOARD_REDIS_URL; none: in-process)")
    serve.add_argument("--workers", type=_workers,
                       default=os.environ.get("SWITCHBOARD_WORKERS", "1"), metavar="N",
                       help="run N serving processes sharing the HTTP and gRPC ports "
                       "(SO_REUSEPORT; needs PostgreSQL and --redis; default "
                       "$SWITCHBOARD_WORKERS or 1)")
    serve.add_argument("--detach-grace", type=float, default=None,
                       help="seconds a turn keeps running after its client leaves")
    serve.add_argument("--shutdown-grace", type=float, default=None,
                       help="seconds running turns get to finish on shutdown")
    serve.add_argument("--interrupt-ttl", type=_positive_seconds, default=None,
                       help="seconds a client-tool interrupt can be resumed (default 900)")
    serve.add_argument("--metrics-port", type=int, default=None,
                       help="also serve GET /metrics on this port (for --role core, which has "
                            "no shim; the shim always serves /metrics)")
    serve.add_argument("--log-format", choices=FORMATS, default="text",
                       help="log lines as text (default) or one JSON object per line")
    serve.add_argument("--otlp-endpoint", default="", type=_otlp_endpoint,
                       help="export OpenTelemetry traces to this OTLP/HTTP endpoint, e.g. "
                            "http://127.0.0.1:4318 (off by default)")
    serve.add_argument("--event-retention-days", type=int, default=None,
                       help="prune the event log of finished turns older than this many "
                            "days (transcripts stay; default: keep)")
    _add_knowledge_root(serve)
    _add_security_flags(serve)
    _add_db(serve)

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key (shown once)")
    create.add_argument("--org", default="demo", help="organisation slug (created if new)")
    create.add_argument("--kind", choices=("publishable", "secret"), default="secret",
                        help="publishable (browser widgets) or secret (servers; default)")
    create.add_argument("--name", default="", help="a label to recognise the key by")
    _add_db(create)
    listing = keys_sub.add_parser("list", help="list an organisation's keys (never the keys)")
    listing.add_argument("--org", default="demo", help="organisation slug")
    _add_db(listing)
    revoke = keys_sub.add_parser("revoke", help="revoke a key now (and its flow sessions)")
    revoke.add_argument("key_id", help="id of the key (as `keys list` shows it)")
    _add_db(revoke)
    rotate = keys_sub.add_parser("rotate", help="a new key; the old one works for --overlap")
    rotate.add_argument("key_id", help="id of the key to replace (as `keys list` shows it)")
    rotate.add_argument("--overlap", type=float, default=None,
                        help="seconds the old key stays valid (default 86400)")
    _add_db(rotate)

    agents = sub.add_parser("agents", help="manage agents")
    agents_sub = agents.add_subparsers(dest="agents_command", required=True)
    apply = agents_sub.add_parser("apply", help="validate and create/update an agent file")
    apply.add_argument("file", type=Path, help="agent YAML file")
    apply.add_argument("--org", default="demo", help="organisation slug (default demo)")
    apply.add_argument("--check", action="store_true", help="only validate")
    _add_knowledge_root(apply)
    _add_db(apply)
    listing = agents_sub.add_parser("list", help="list agents")
    listing.add_argument("--org", default="demo", help="organisation slug (default demo)")
    _add_knowledge_root(listing)
    _add_db(listing)

    from launcher import organisations, orgs, usage

    usage.add_parser(sub)
    orgs.add_parser(sub)
    organisations.add_parser(sub)

    from launcher import prices

    prices.add_parser(sub)

    chat = sub.add_parser("chat", help="chat with an agent from the terminal (gRPC)")
    chat.add_argument("message", nargs="*", help="one message; omit for an interactive session")
    chat.add_argument("--agent", default="",
                      help="agent slug (default: the organisation's active agent)")
    chat.add_argument("--core", default="127.0.0.1:50051",
                      help="core address (default 127.0.0.1:50051, as `make run` starts it)")
    chat.add_argument("--key", default=os.environ.get("SWITCHBOARD_KEY", "sk_demo_secret_key"),
                      help="secret API key (default $SWITCHBOARD_KEY, else the demo key)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    ns = build_parser().parse_args(args)
    worker = _worker() if ns.command == "serve" else None
    configure_logging(getattr(ns, "log_format", "text"),
                      os.environ.get("SWITCHBOARD_LOG_LEVEL", "INFO"), worker=worker)
    if ns.command not in _NO_STORE and not getattr(ns, "check", False):
        from launcher.database import missing_default_database

        problem = missing_default_database(_config(ns).database,
                                           bool(getattr(ns, "database", None)))
        if problem:
            print(problem, file=sys.stderr)
            return 2
    try:
        if ns.command == "serve" and ns.workers > 1:
            return _serve_workers(ns, args)
        if ns.command == "serve":
            from launcher.serve import StartError, serve_forever

            if worker is not None:
                from launcher.workers import follow_parent

                follow_parent()

            try:
                options = _serve_options(ns)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            try:
                asyncio.run(serve_forever(_config(ns), options))
            except StartError as exc:
                print(f"switchboard: {exc}", file=sys.stderr)
                return 1
            return 0
        if ns.command == "orgs":
            from launcher import organisations

            return asyncio.run(organisations.run(ns, _config(ns)))
        if ns.command == "org":
            from launcher import orgs

            return asyncio.run(orgs.run(ns, _config(ns)))
        if ns.command == "usage":
            from launcher import usage

            return asyncio.run(usage.run(ns, _config(ns)))
        if ns.command == "prices":
            from launcher import prices

            return asyncio.run(prices.run(ns, _config(ns)))
        if ns.command == "chat":
            from launcher.chat import run_chat

            return asyncio.run(run_chat(ns.core, ns.key, ns.agent, " ".join(ns.message)))
        from launcher import admin

        return asyncio.run(admin.run(ns, _config(ns)))
    except StoreURLError as exc:
        print(f"error: --database: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _serve_workers(ns: argparse.Namespace, args: list[str]) -> int:
    from launcher import workers

    config = _config(ns)
    if ns.role != "shim":  # a shim alone keeps no state: any number may share a port
        problem = workers.refusal(ns.workers, config.database, ns.redis)
        if problem:
            print(problem, file=sys.stderr)
            return 2
    ports = {"--grpc-port": config.port or workers.free_port(config.host),
             "--http-port": ns.http_port or workers.free_port(ns.http_host)}
    if ns.metrics_port is not None:
        ports["--metrics-port"] = ns.metrics_port or workers.free_port(ns.http_host)
    return asyncio.run(workers.supervise(workers.worker_argv(args, ports), ns.workers))


if __name__ == "__main__":
    sys.exit(main())
