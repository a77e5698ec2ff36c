"""OpenTelemetry traces, off unless `--otlp-endpoint` is given.

One trace per request: the shim's server span, the core's gRPC span (its parent travels in
the `traceparent` gRPC metadata entry, W3C trace context) and, below it, spans for store
operations, the model call and tool calls. Spans are exported over OTLP/HTTP (protobuf).
While tracing is off every helper here is a no-op that costs one check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from urllib.parse import urlsplit

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind

TRACES_PATH = "/v1/traces"
_provider: TracerProvider | None = None

AttributeValue = str | int | float | bool


def traces_url(endpoint: str) -> str:
    """`http://collector:4318` means its standard traces path; a full URL is kept."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--otlp-endpoint must be an http(s) URL, not {endpoint!r}")
    return endpoint if parts.path not in ("", "/") else endpoint.rstrip("/") + TRACES_PATH


def configure_tracing(endpoint: str = "", *, service: str = "switchboard",
                      exporter: SpanExporter | None = None) -> None:
    """Start exporting spans to an OTLP/HTTP endpoint (or to `exporter`)."""
    global _provider
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=traces_url(endpoint))
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    shutdown_tracing()
    _provider = provider


def shutdown_tracing() -> None:
    """Flush what is buffered and stop exporting."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


def enabled() -> bool:
    return _provider is not None


def _tracer() -> trace.Tracer:
    assert _provider is not None
    return _provider.get_tracer("switchboard")


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, AttributeValue] | None = None,
         kind: SpanKind = SpanKind.INTERNAL) -> Iterator[Span | None]:
    """A child span of the current one (None while tracing is off)."""
    if _provider is None:
        yield None
        return
    with _tracer().start_as_current_span(name, kind=kind, attributes=attributes) as current:
        yield current


@contextlib.contextmanager
def server_span(name: str, carrier: Mapping[str, str],
                attributes: Mapping[str, AttributeValue] | None = None,
                ) -> Iterator[Span | None]:
    """A server span whose parent is the trace context in `carrier` (HTTP headers or gRPC
    metadata), if any."""
    if _provider is None:
        yield None
        return
    parent = propagate.extract(carrier)
    with _tracer().start_as_current_span(name, context=parent, kind=SpanKind.SERVER,
                                         attributes=attributes) as current:
        yield current


def inject() -> list[tuple[str, str]]:
    """The current trace context as gRPC metadata entries (empty while tracing is off)."""
    if _provider is None:
        return []
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(key.lower(), value) for key, value in carrier.items()]


def current_trace_id() -> str:
    if _provider is None:
        return ""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


def start_span(name: str, attributes: Mapping[str, AttributeValue] | None = None,
               ) -> Span | None:
    """A child span of the current one that the caller ends (for work spread over an
    async generator's yields, where a current-span context could not be detached)."""
    if _provider is None:
        return None
    return _tracer().start_span(name, attributes=attributes)
