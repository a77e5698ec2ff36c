"""Webhooks out: events an organisation's endpoints subscribe to, kept in a durable outbox
written in the same transaction as the change, and delivered (signed, retried, in order per
conversation) by a background dispatcher. Not to be confused with `core.webhooks`, the HTTP
webhook *tools* an agent calls during a turn.

- `events`: the event types, `OutboxEvent` and its JSON body;
- `endpoints`: an organisation's endpoints and the rules for their URL, secret and events;
- `signing`: the `Switchboard-Signature` header (sign and verify);
- `deliveries`: delivery records, the retry schedule;
- `dispatcher`: the background sender in every core process.

See docs/webhooks.md.
"""
