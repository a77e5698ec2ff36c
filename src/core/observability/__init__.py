"""Operations: Prometheus metrics, request ids and structured logs, OpenTelemetry traces.

One owner per concern: `metrics` holds every metric family (one registry per process),
`requests` the request id, `logs` the text/JSON log formats, `tracing` the optional OTLP
exporter. The gRPC interceptor, the store and turn hooks report through them; the shim's
aiohttp middleware lives in `shim.observability`.
"""
