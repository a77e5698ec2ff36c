"""The idempotency digest of a turn request: stable across versions (a retry after an
upgrade still matches its stored turn) and computed without copying the request."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict
from typing import Any

import pytest

from core.domain import HistoryItem, ReportedUsage, ResumeRequest, ToolOutput, TurnRequest
from core.engine.turns import request_hash
from core.providers.base import ContextEntry, ToolSpec


def _previous_hash(request: TurnRequest) -> str:
    """The digest as the first release computed it (asdict, then JSON)."""
    data = asdict(request)
    data.pop("idempotency_key", None)
    data.pop("metadata", None)
    data.pop("ledger_user", None)  # who is billed, not what was asked
    raw = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


RICH = TurnRequest(
    message="hi", user_id="u1", company_id="c1", conversation_id="conv", agent="a",
    images=("data:image/png;base64," + "A" * 10_000, "https://example.com/x.png"),
    custom_fields={"b": [1, 2.5, None, {"z": True}], "a": "x"},
    context={"plan": ContextEntry("Plan", "string", "pro"),
             "n": ContextEntry("N", "number", 3)},
    history=(HistoryItem("user", "before"), HistoryItem("assistant", "reply")),
    behavior_context="be nice",
    client_tools=(ToolSpec("lookup", "finds", {"type": "object"}, True),),
    resume=ResumeRequest("int_1", (ToolOutput("call_1", '{"ok":1}', False),)),
    idempotency_key="k", origin="https://shop.example", variables={"v": 1},
    reported_usage=ReportedUsage(1, 2, 3, "m"), intent_name="i", dialect="halo",
    metadata={"trace": "x"},
)


@pytest.mark.parametrize("request_", [TurnRequest(), TurnRequest(message="hi"), RICH])
def test_digest_is_unchanged(request_: TurnRequest) -> None:
    assert request_hash(request_) == _previous_hash(request_)


def test_idempotency_key_and_metadata_are_not_part_of_it() -> None:
    from dataclasses import replace

    assert request_hash(RICH) == request_hash(replace(RICH, idempotency_key="other",
                                                      metadata={}))
    assert request_hash(RICH) != request_hash(replace(RICH, message="other"))


def test_digest_copies_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """`asdict` deep-copied every value (a request's images too) on every idempotent
    turn; the digest only needs to read them."""
    def refuse(value: Any, memo: Any = None) -> Any:
        raise AssertionError("request_hash copied the request")

    monkeypatch.setattr(copy, "deepcopy", refuse)
    assert len(request_hash(RICH)) == 64
