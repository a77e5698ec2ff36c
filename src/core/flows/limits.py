"""Every limit the flow engine enforces, one named constant each (tests probe max and
max+1). Kept beside the engine rather than in core/limits.py so the flow package owns its
rules; the public numbers come from the flow dialect's spec."""

from __future__ import annotations

# Request rules (public-flow-chat-messages spec)
MAX_TEXT_CHARS = 4_000  # code points
MAX_VARIABLES = 50
MAX_VARIABLES_JSON_BYTES = 4_096  # compact JSON, UTF-8
MAX_VARIABLE_DEPTH = 4  # array nesting; a scalar has depth 0, [1] depth 1
MAX_CONTEXT_JSON_BYTES = 16 * 1024
MAX_REPORTED_TOKENS = 100_000_000  # per count, per message
MAX_MODEL_NAME_CHARS = 128
MAX_INPUT_CHARS = 4_000  # an answer given as `input`

# Engine
MAX_STEPS_PER_EXECUTION = 100  # steps run over an execution's whole life (stops loops)
SESSION_TTL_S = 60 * 60  # session tokens live one hour
# A waiting execution can be continued for a day: longer than a session, so a user can come
# back later with a new session for the same conversation (conversationId).
WAIT_TTL_S = 24 * 60 * 60
MAX_SESSION_TOKEN_CHARS = 512
MAX_FLOW_STEPS_DEFINED = 200  # steps in one flow definition
MAX_TOOL_RESULT_JSON_BYTES = 64 * 1024  # a tool result stored in flow variables
