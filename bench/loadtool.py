"""A ghz-like gRPC load tool, for machines without ghz.

It reads the same configuration keys as ghz (`call`, `host`, `protoset`, `total`,
`concurrency`, `connections`, `data`, `metadata`, `duration`, `timeout`, `insecure`) from a
JSON file or flags, so the files in bench/ghz/ drive both tools, and prints a ghz-like
summary (count, total, requests/s, fastest, slowest, average, a histogram, the 10/25/50/75/
90/95/99 % latencies and the status-code distribution).

    python -m bench.loadtool --config bench/ghz/chat.json
    python -m bench.loadtool --config bench/ghz/stream_chat.json -n 500 -c 20 127.0.0.1:50051

Method descriptors come from `protoset` (the shipped bench/ghz/switchboard.protoset) or,
without one, from the compiled-in switchboard.v1 package; `.proto` compilation and server
reflection are ghz features this tool leaves out. Data follows ghz: for unary and
server-streaming calls an object (an array is used round-robin, one element per request);
for client- and bidi-streaming calls an array whose elements are sent on each stream.
The template variables `{{.RequestNumber}}`, `{{.WorkerID}}`, `{{.UUID}}`,
`{{.TimestampUnix}}` and `{{newUUID}}` are filled in per request.

A stream's latency is the whole call (first request to trailing status), as in ghz; the
report also counts response messages and, given a predicate, the time to the first
matching response (the benchmark's "time to first token").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PROTOSET = REPO_ROOT / "bench" / "ghz" / "switchboard.protoset"
DEFAULT_HOST = "127.0.0.1:50051"
DEFAULT_TOTAL = 200  # ghz's defaults for -n and -c
DEFAULT_CONCURRENCY = 50
CONNECT_TIMEOUT_S = 10.0  # ghz's connect-timeout default
PERCENTILES = (10, 25, 50, 75, 90, 95, 99)
MAX_MESSAGE_BYTES = 32 * 1024 * 1024  # as the core accepts (core.limits.MAX_GRPC_MESSAGE_BYTES)

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str | float | int | None) -> float:
    """A Go duration ("10s", "1m30s", "250ms") or a number of seconds, in seconds."""
    if value is None or value == "":
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    if text == "0":
        return 0.0
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {value!r} (use e.g. 10s, 500ms, 1m30s)")
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


@dataclass(frozen=True, slots=True)
class LoadConfig:
    """One run, in ghz's terms. `duration` > 0 runs for that long and ignores `total`."""

    call: str
    host: str = DEFAULT_HOST
    protoset: str = ""
    total: int = DEFAULT_TOTAL
    concurrency: int = DEFAULT_CONCURRENCY
    connections: int = 1
    data: Any = None
    metadata: dict[str, str] = field(default_factory=dict)
    duration: float = 0.0
    timeout: float = 20.0
    insecure: bool = True

    @classmethod
    def from_mapping(cls, raw: dict[str, Any], base_dir: Path | None = None) -> LoadConfig:
        """A ghz configuration object; unknown ghz keys are ignored, ours are checked."""
        if not isinstance(raw.get("call"), str) or not raw["call"]:
            raise ValueError("config needs `call` (package.Service.Method)")
        protoset = str(raw.get("protoset") or "")
        if protoset and base_dir is not None and not Path(protoset).exists():
            # ghz resolves paths against the working directory; also accept the
            # config file's folder so the shipped files work from anywhere.
            beside = base_dir / Path(protoset).name
            if beside.exists():
                protoset = str(beside)
        metadata = raw.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ValueError("`metadata` must be an object of strings")
        config = cls(
            call=raw["call"],
            host=str(raw.get("host") or DEFAULT_HOST),
            protoset=protoset,
            total=int(raw.get("total", DEFAULT_TOTAL)),
            concurrency=int(raw.get("concurrency", DEFAULT_CONCURRENCY)),
            connections=int(raw.get("connections", 1)),
            data=raw.get("data"),
            metadata={str(k): str(v) for k, v in metadata.items()},
            duration=parse_duration(raw.get("duration")),
            timeout=parse_duration(raw.get("timeout", "20s")),
            insecure=bool(raw.get("insecure", True)),
        )
        config.validate()
        return config

    def validate(self) -> None:
        if self.concurrency < 1 or self.connections < 1:
            raise ValueError("concurrency and connections must be at least 1")
        if self.duration <= 0 and self.total < self.concurrency:
            raise ValueError("total cannot be smaller than concurrency (as in ghz)")
        if not self.insecure:
            raise ValueError("only plaintext connections are supported (`insecure: true`)")


def load_config(path: str | Path) -> LoadConfig:
    path = Path(path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a ghz config is a JSON object")
    return LoadConfig.from_mapping(raw, base_dir=path.parent)


# -- methods -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Method:
    path: str  # /package.Service/Method
    request: type[Message]
    response: type[Message]
    client_streaming: bool
    server_streaming: bool


def _pool(protoset: str) -> descriptor_pool.DescriptorPool:
    if not protoset:
        # The compiled-in descriptors (importing registers them in the default pool).
        from switchboard.v1 import chat_pb2, events_pb2  # noqa: F401

        return descriptor_pool.Default()
    fds = descriptor_pb2.FileDescriptorSet.FromString(Path(protoset).read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for proto in fds.file:
        pool.Add(proto)
    return pool


def resolve(call: str, protoset: str = "") -> Method:
    """`package.Service.Method` or `package.Service/Method` → the method's descriptors."""
    service_name, sep, method_name = call.rpartition("/")
    if not sep:
        service_name, _, method_name = call.rpartition(".")
    if not service_name or not method_name:
        raise ValueError(f"call must be package.Service.Method, not {call!r}")
    pool = _pool(protoset)
    try:
        service = pool.FindServiceByName(service_name)
    except KeyError:
        raise ValueError(f"service {service_name!r} is not in the descriptors") from None
    found = service.methods_by_name.get(method_name)
    if found is None:
        raise ValueError(f"{service_name} has no method {method_name!r}")
    return Method(
        path=f"/{service.full_name}/{found.name}",
        request=message_factory.GetMessageClass(found.input_type),
        response=message_factory.GetMessageClass(found.output_type),
        client_streaming=found.client_streaming,
        server_streaming=found.server_streaming,
    )


# -- call data -----------------------------------------------------------------------------

_TEMPLATE = re.compile(r"\{\{\s*(\.RequestNumber|\.WorkerID|\.UUID|\.TimestampUnix|newUUID)\s*\}\}")


def _render(text: str, request_number: int, worker: int) -> str:
    if "{{" not in text:
        return text

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == ".RequestNumber":
            return str(request_number)
        if name == ".WorkerID":
            return f"w{worker}"
        if name == ".TimestampUnix":
            return str(int(time.time()))
        return str(uuid.uuid4())

    return _TEMPLATE.sub(value, text)


class CallData:
    """Builds each request's message(s) from the ghz `data` value."""

    def __init__(self, method: Method, data: Any) -> None:
        self.method = method
        items = data if isinstance(data, list) else [data or {}]
        if not items or not all(isinstance(i, dict) for i in items):
            raise ValueError("`data` must be an object or a non-empty array of objects")
        self._texts = [json.dumps(i) for i in items]
        self._templated = any("{{" in t for t in self._texts)
        self._cached = [self._parse(t) for t in self._texts]

    def _parse(self, text: str) -> Message:
        msg = self.method.request()
        json_format.Parse(text, msg)
        return msg

    def _one(self, index: int, number: int, worker: int) -> Message:
        if not self._templated:
            return self._cached[index]
        return self._parse(_render(self._texts[index], number, worker))

    def unary(self, number: int, worker: int) -> Message:
        return self._one(number % len(self._texts), number, worker)

    def stream(self, number: int, worker: int) -> list[Message]:
        return [self._one(i, number, worker) for i in range(len(self._texts))]


# -- report --------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(slots=True)
class Report:
    """What one run measured. Latencies in seconds."""

    name: str = ""
    total_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    first: list[float] = field(default_factory=list)  # time to the first matching response
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    messages: int = 0  # response messages (stream events, SSE events, HTTP chunks)

    @property
    def count(self) -> int:
        return sum(self.statuses.values())

    @property
    def ok(self) -> int:
        return self.statuses.get("OK", 0)

    @property
    def rps(self) -> float:
        return self.count / self.total_s if self.total_s > 0 else 0.0

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.total_s if self.total_s > 0 else 0.0

    def pct(self, p: float) -> float:
        return percentile(sorted(self.latencies), p)

    def first_pct(self, p: float) -> float:
        return percentile(sorted(self.first), p)

    def to_dict(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "name": self.name,
            "count": self.count,
            "total_s": self.total_s,
            "rps": self.rps,
            "fastest_s": lat[0] if lat else 0.0,
            "slowest_s": lat[-1] if lat else 0.0,
            "average_s": sum(lat) / len(lat) if lat else 0.0,
            "latency_distribution": {f"p{p}": percentile(lat, p) for p in PERCENTILES},
            "status_code_distribution": dict(self.statuses),
            "error_distribution": dict(self.errors),
            "messages": self.messages,
            "messages_per_s": self.messages_per_s,
            "first_response": {f"p{p}": self.first_pct(p) for p in PERCENTILES},
        }

    def summary(self) -> str:
        """ghz's text summary."""
        lat = sorted(self.latencies)
        out = ["", "Summary:"]
        if self.name:
            out.append(f"  Name:\t{self.name}")
        out += [
            f"  Count:\t{self.count}",
            f"  Total:\t{_ms(self.total_s)}",
            f"  Slowest:\t{_ms(lat[-1] if lat else 0.0)}",
            f"  Fastest:\t{_ms(lat[0] if lat else 0.0)}",
            f"  Average:\t{_ms(sum(lat) / len(lat) if lat else 0.0)}",
            f"  Requests/sec:\t{self.rps:.2f}",
        ]
        if self.messages:
            out.append(f"  Messages:\t{self.messages} ({self.messages_per_s:.2f}/s)")
        if lat:
            out += ["", "Response time histogram:", *_histogram(lat)]
            out += ["", "Latency distribution:"]
            out += [f"  {p} % in {_ms(percentile(lat, p))} " for p in PERCENTILES]
        if self.first:
            out += ["", "Time to first response:"]
            out += [f"  {p} % in {_ms(self.first_pct(p))} " for p in (50, 90, 99)]
        out += ["", "Status code distribution:"]
        out += [f"  [{code}]\t{n} responses" for code, n in self.statuses.most_common()]
        if self.errors:
            out += ["", "Error distribution:"]
            out += [f"  [{n}]\t{text}" for text, n in self.errors.most_common()]
        return "\n".join(out) + "\n"


def go_code_name(code: grpc.StatusCode) -> str:
    """A status code as ghz (grpc-go) prints it: OK, NotFound, ResourceExhausted..."""
    if code == grpc.StatusCode.OK:
        return "OK"
    if code == grpc.StatusCode.CANCELLED:
        return "Canceled"  # grpc-go's spelling
    return "".join(word.capitalize() for word in code.name.split("_"))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def _histogram(lat: Sequence[float], buckets: int = 10, width: int = 40) -> list[str]:
    low, high = lat[0], lat[-1]
    step = (high - low) / buckets or 1e-9
    counts = [0] * (buckets + 1)
    for v in lat:
        counts[min(buckets, int((v - low) / step))] += 1
    top = max(counts) or 1
    return [
        f"  {(low + i * step) * 1000:.3f} [{n}]\t|{'∎' * max(0, round(n / top * width))}"
        for i, n in enumerate(counts)
    ]


# -- the runner ----------------------------------------------------------------------------

FirstMatch = Callable[[Message], bool]


def _channel(host: str, index: int) -> grpc.aio.Channel:
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        # One TCP connection per channel: without a local pool, channels to one target
        # share their subchannel and `connections` would be a lie.
        ("grpc.use_local_subchannel_pool", 1),
        ("bench.connection", index),
    ]
    return grpc.aio.insecure_channel(host, options=options)


class _Calls:
    """One multicallable per channel for the method's shape."""

    def __init__(self, channel: grpc.aio.Channel, method: Method) -> None:
        ser, de = method.request.SerializeToString, method.response.FromString
        if method.client_streaming and method.server_streaming:
            self.call: Any = channel.stream_stream(method.path, ser, de)
        elif method.client_streaming:
            self.call = channel.stream_unary(method.path, ser, de)
        elif method.server_streaming:
            self.call = channel.unary_stream(method.path, ser, de)
        else:
            self.call = channel.unary_unary(method.path, ser, de)


async def run(config: LoadConfig, *, first_match: FirstMatch | None = None,
              count_match: FirstMatch | None = None, name: str = "") -> Report:
    """Runs the load and returns its report (errors are counted, never raised).

    `count_match` limits `messages` to the responses it accepts (e.g. text deltas);
    `first_match` picks the response whose arrival time `first` records."""
    config.validate()
    method = resolve(config.call, config.protoset)
    data = CallData(method, config.data)
    metadata = tuple(config.metadata.items())
    timeout = config.timeout or None
    channels = [_channel(config.host, i) for i in range(config.connections)]
    calls = [_Calls(ch, method) for ch in channels]
    report = Report(name=name or config.call)
    counter = 0
    deadline = 0.0

    def take() -> int | None:
        nonlocal counter
        if config.duration > 0:
            if time.perf_counter() >= deadline:
                return None
        elif counter >= config.total:
            return None
        counter += 1
        return counter - 1

    async def one(number: int, worker: int) -> None:
        call = calls[worker % len(calls)].call
        start = time.perf_counter()
        code = "OK"
        try:
            if method.client_streaming:
                messages = data.stream(number, worker)
                if method.server_streaming:
                    await _consume(call(iter(messages), metadata=metadata, timeout=timeout),
                                   start, report, first_match, count_match)
                else:
                    await call(iter(messages), metadata=metadata, timeout=timeout)
                    report.messages += 1
            elif method.server_streaming:
                await _consume(call(data.unary(number, worker), metadata=metadata,
                                    timeout=timeout), start, report, first_match, count_match)
            else:
                await call(data.unary(number, worker), metadata=metadata, timeout=timeout)
                report.messages += 1
        except grpc.aio.AioRpcError as exc:
            code = go_code_name(exc.code())
            report.errors[f"rpc error: code = {code} desc = {exc.details()}"] += 1
        report.latencies.append(time.perf_counter() - start)
        report.statuses[code] += 1

    async def worker(index: int) -> None:
        while (number := take()) is not None:
            await one(number, index)

    try:
        await asyncio.wait_for(
            asyncio.gather(*(ch.channel_ready() for ch in channels)), CONNECT_TIMEOUT_S)
        began = time.perf_counter()
        deadline = began + config.duration
        await asyncio.gather(*(worker(i) for i in range(config.concurrency)))
        report.total_s = time.perf_counter() - began
    finally:
        for ch in channels:
            await ch.close()
    return report


async def _consume(stream: Any, start: float, report: Report,
                   first_match: FirstMatch | None, count_match: FirstMatch | None) -> None:
    seen_first = False
    async for response in stream:
        if count_match is None or count_match(response):
            report.messages += 1
        if not seen_first and (first_match is None or first_match(response)):
            report.first.append(time.perf_counter() - start)
            seen_first = True


# -- command line --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.loadtool",
        description="A ghz-like gRPC load tool reading ghz configuration files.",
    )
    p.add_argument("host", nargs="?", help="host:port (overrides the config's `host`)")
    p.add_argument("--config", help="ghz JSON configuration file")
    p.add_argument("--call", help="package.Service.Method")
    p.add_argument("--protoset", help="compiled protoset (default: compiled-in descriptors)")
    p.add_argument("-n", "--total", type=int)
    p.add_argument("-c", "--concurrency", type=int)
    p.add_argument("--connections", type=int)
    p.add_argument("-z", "--duration", help="run for this long (e.g. 10s); ignores -n")
    p.add_argument("-t", "--timeout", help="per call (e.g. 20s; 0 for none)")
    p.add_argument("-d", "--data", help="call data as JSON")
    p.add_argument("-m", "--metadata", help="metadata as a JSON object")
    p.add_argument("--insecure", action="store_true", help="plaintext (the only mode)")
    p.add_argument("-O", "--format", choices=("summary", "json"), default="summary")
    return p


def config_from_args(ns: argparse.Namespace) -> LoadConfig:
    raw: dict[str, Any] = {}
    base_dir = None
    if ns.config:
        raw = json.loads(Path(ns.config).read_text(encoding="utf-8"))
        base_dir = Path(ns.config).parent
    overrides: dict[str, Any] = {
        "host": ns.host, "call": ns.call, "protoset": ns.protoset, "total": ns.total,
        "concurrency": ns.concurrency, "connections": ns.connections,
        "duration": ns.duration, "timeout": ns.timeout,
        "data": json.loads(ns.data) if ns.data else None,
        "metadata": json.loads(ns.metadata) if ns.metadata else None,
    }
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return LoadConfig.from_mapping(raw, base_dir=base_dir)


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        config = config_from_args(ns)
        report = asyncio.run(run(config))
    except (ValueError, OSError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if ns.format == "json":
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.summary())
    return 0 if report.ok == report.count else 1


def with_overrides(config: LoadConfig, **changes: Any) -> LoadConfig:
    """A copy with some keys changed (the benchmark sizes the shipped configs)."""
    return replace(config, **changes)


if __name__ == "__main__":
    sys.exit(main())
