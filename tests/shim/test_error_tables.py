"""One error-table mechanism: each dialect's table is the generic one plus its own
overrides, and a described error keeps the core's message."""

from __future__ import annotations

from shim import flow, halo_errors, status_map
from shim.core_client import CoreError
from shim.status_map import GENERIC, ErrorTable


def test_dialect_tables_are_the_generic_table_overridden() -> None:
    for table in (halo_errors.TABLE, flow.TABLE):
        assert isinstance(table, ErrorTable)
        assert set(table.by_reason) == set(GENERIC.by_reason)
        assert set(table.by_code) == set(GENERIC.by_code)
    # An entry a dialect does not override is the generic one.
    assert halo_errors.TABLE.by_reason["rate_limited"] == GENERIC.by_reason["rate_limited"]
    assert flow.TABLE.by_reason["wait_expired"] == GENERIC.by_reason["wait_expired"]


def test_override_replaces_only_what_it_names() -> None:
    table = GENERIC.override(reasons={"rate_limited": (503, "busy")},
                             codes={"ABORTED": (429, "retry")})
    assert table.entry(CoreError("RESOURCE_EXHAUSTED", "rate_limited", "m")) == (503, "busy")
    assert table.entry(CoreError("ABORTED", "", "")) == (429, "retry")
    assert table.by_reason["budget_exceeded"] == GENERIC.by_reason["budget_exceeded"]
    assert GENERIC.by_reason["rate_limited"] == (429, "rate_limited")  # left untouched


def test_messages_only_for_described_errors() -> None:
    described = CoreError("NOT_FOUND", "agent_not_found", "Agent 'x' not found.")
    transport = CoreError("UNAVAILABLE", "", "failed to connect to all addresses; ipv4:...")
    assert GENERIC.public_message(described) == "Agent 'x' not found."
    assert GENERIC.public_message(transport) == status_map.GENERIC_MESSAGES[503]
    assert flow.TABLE.public_message(CoreError("PERMISSION_DENIED", "", "x")) == "Error."
    assert status_map.http_status("ABORTED", "turn_in_progress") == 409
