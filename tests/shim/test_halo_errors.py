"""The Halo error table is total, and uses only the statuses Halo documents."""

from __future__ import annotations

import grpc
import pytest

from core.errors import Reason
from shim.core_client import CoreError
from shim.halo_errors import (
    BY_CODE,
    BY_REASON,
    HALO_STATUSES,
    error_body,
    error_response,
    status_and_code,
)


@pytest.mark.parametrize("reason", list(Reason))
def test_every_core_reason_is_mapped(reason: Reason) -> None:
    assert reason.value in BY_REASON, f"add {reason.value!r} to shim.halo_errors.BY_REASON"
    status, code = BY_REASON[reason.value]
    assert status in HALO_STATUSES and code


def test_no_stale_reasons() -> None:
    assert set(BY_REASON) == {r.value for r in Reason}


@pytest.mark.parametrize("code", [c.name for c in grpc.StatusCode])
def test_every_grpc_code_is_mapped(code: str) -> None:
    assert code in BY_CODE, f"add {code} to shim.halo_errors.BY_CODE"
    assert BY_CODE[code][0] in HALO_STATUSES


def test_every_documented_status_is_reachable() -> None:
    used = {status for status, _ in (*BY_REASON.values(), *BY_CODE.values())}
    assert used == HALO_STATUSES


def test_reason_wins_over_code() -> None:
    error = CoreError("INVALID_ARGUMENT", "payload_too_large", "too big")
    assert status_and_code(error) == (413, "payload_too_large")


def test_transport_errors_never_leak_their_details() -> None:
    error = CoreError("UNAVAILABLE", "", "failed to connect to all addresses; 10.0.0.7:50051")
    assert status_and_code(error) == (503, "unavailable")
    assert "10.0.0.7" not in error_body(error)["error"]["message"]


@pytest.mark.parametrize(("error", "header"), [
    # No delay from the core (a turn already running in the session): 1 second.
    (CoreError("ABORTED", "turn_in_progress", "A turn is already running."), "1"),
    (CoreError("RESOURCE_EXHAUSTED", "rate_limited", "slow down"), "1"),
    (CoreError("RESOURCE_EXHAUSTED", "rate_limited", "slow down", retry_after_s=0.2), "1"),
    (CoreError("RESOURCE_EXHAUSTED", "budget_exceeded", "spent", retry_after_s=3.01), "4"),
    (CoreError("UNAVAILABLE", "shutting_down", "draining"), "1"),
])
def test_every_429_and_503_carries_retry_after(error: CoreError, header: str) -> None:
    response = error_response(error)
    assert response.status in (429, 503)
    assert response.headers["Retry-After"] == header


def test_other_statuses_carry_no_retry_after() -> None:
    response = error_response(CoreError("INVALID_ARGUMENT", "message_required", "m"))
    assert "Retry-After" not in response.headers
