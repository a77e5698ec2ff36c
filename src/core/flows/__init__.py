"""The flow engine: guided conversations (intents made of steps) run as executions.

An execution shows blocks, waits for the user's input at `ask` steps (a stored wait token
continues it, on any core process), and ends, hands off to a team or fails. Modules:
`definition` (the `flows:` section of agent YAML), `variables` (request variable rules),
`templates`, `inputs` (expected-input checks), `runner` (the step interpreter),
`sessions` (session tokens), `store` (what the engine needs from the store) and `engine`
(sessions, messages, waits and transcripts).
"""
