"""Every limit the core enforces, as one named constant each (tests probe max and max+1)."""

from __future__ import annotations

MAX_MESSAGE_CHARS = 10_000  # code points, Halo spec
MAX_BEHAVIOR_CONTEXT_CHARS = 5_000  # code points, Halo spec
MAX_USER_ID_CHARS = 256
MAX_COMPANY_ID_CHARS = 256
MAX_REFERENCE_CHARS = 256  # agent ids/slugs, conversation ids, interrupt ids
MAX_IMAGES = 8
MAX_IMAGE_URL_BYTES = 4 * 1024 * 1024  # a data: URL of a ~3 MB screenshot
MAX_HISTORY_ITEMS = 100
MAX_HISTORY_ITEM_CHARS = 10_000
MAX_CONTEXT_ENTRIES = 50
MAX_CONTEXT_JSON_BYTES = 64 * 1024
MAX_CUSTOM_FIELDS = 100
MAX_CUSTOM_FIELDS_JSON_BYTES = 16 * 1024
MAX_CLIENT_TOOLS = 64
MAX_IDEMPOTENCY_KEY_CHARS = 255
MAX_AGENT_STEPS = 8  # model calls per turn (tool loops)

# gRPC transport
# The largest legal request is MAX_IMAGES data URLs plus text fields (~33 MiB). The HTTP
# body limit sits above it and the gRPC limit above that, so a legal request never trips a
# transport limit and an oversized body is refused by the shim with its dialect's 413.
MAX_REQUEST_BODY_BYTES = 40 * 1024 * 1024
# Routes whose legal bodies are small (no images, history or tool results) read at most
# this much.
MAX_SMALL_BODY_BYTES = 256 * 1024
# Image-carrying bodies being read and parsed at once, per shim process (each may be
# MAX_REQUEST_BODY_BYTES): bounds the memory a burst of large bodies can take.
MAX_LARGE_BODIES_IN_FLIGHT = 4
# HTTP connection bounds of the shim.
REQUEST_HEAD_TIMEOUT_S = 10.0
MAX_HTTP_CONNECTIONS = 2048
MAX_GRPC_MESSAGE_BYTES = 48 * 1024 * 1024
# Nesting of a JSON request body (objects and arrays; the body itself is level 1).
# protobuf parsers refuse messages nested deeper than 100 levels and every JSON level is
# two levels of a Struct (Value, then Struct or ListValue), so deeper bodies could not be
# carried to the core; JSON Schemas and context values stay far below it.
MAX_JSON_DEPTH = 32
# Values (numbers, strings, ...) in one JSON body. Above the largest legal request (64
# client tools of 16 KiB schemas, ~0.5M values); it bounds the shim's work turning a body
# into protobuf, which for millions of values takes seconds of event-loop time.
MAX_JSON_VALUES = 600_000
MAX_CONCURRENT_RPCS = 10_000  # mostly idle streams; per-key caps bound each tenant

# Turn lifecycle
DEFAULT_DETACH_GRACE_S = 10.0
DEFAULT_SHUTDOWN_GRACE_S = 5.0
DEFAULT_INTERRUPT_TTL_S = 15 * 60
LIST_MESSAGES_DEFAULT_PAGE = 100
LIST_MESSAGES_MAX_PAGE = 1000

# Agent runtime: webhook tools and routing rules
MAX_WEBHOOK_RESPONSE_BYTES = 64 * 1024  # a tool result goes back into the model's context
DEFAULT_WEBHOOK_TIMEOUT_S = 10.0
MAX_WEBHOOK_TIMEOUT_S = 30.0  # whole seconds in agent files; the user is waiting
MAX_ROUTING_PATTERN_CHARS = 500  # regexes run on every message: keep them small

# Client tools (aibot `tools`, gRPC TurnInput.client_tools)
MAX_CLIENT_TOOL_NAME_CHARS = 64  # the function-name rule model APIs share
MAX_CLIENT_TOOL_DESCRIPTION_CHARS = 1_024
MAX_CLIENT_TOOL_PARAMETERS_BYTES = 16 * 1024  # JSON Schema, compact UTF-8 JSON

# Human handoff (core.handoffs)
MAX_OPERATOR_MESSAGE_CHARS = 10_000  # code points, as a visitor's message
MAX_OPERATOR_NAME_CHARS = 100
HANDOFF_LIST_MAX = 500  # conversations one queue listing returns
ACTIVITY_PAGE = 500  # activity rows one replay read returns
# Open listen streams of one conversation, per process (a visitor's tabs and devices).
MAX_LISTENERS_PER_CONVERSATION = 10
