"""The turn engine: intake, routing, the agent loop, live turns. No gRPC imports here."""
