"""Routing rules: keyword, pattern, mode, business hours (injected clock, zoneinfo), and
direct-to-team turns over real gRPC (ticket, routing, acknowledgement, no generation)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.agents.definition import parse_agent
from core.clock import FixedClock
from core.engine import router
from harness import Harness, auth
from switchboard.v1 import chat_pb2, events_pb2

NOW = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)  # a Wednesday, 10:00 in New York (EST)
HOURS = {"timezone": "America/New_York", "days": ["mon", "tue", "wed", "thu", "fri"],
         "open": "08:00", "close": "18:00"}


def agent(**fields: object) -> router.AgentDefinition:
    return parse_agent({"name": "Router test", "provider": "scripted", **fields})


def test_keywords_match_at_word_start_case_insensitively() -> None:
    when = {"keywords": ["billing dispute", "error", "bug"]}
    assert router.matches(when, "I have a Billing  Dispute", "chat", NOW)
    assert router.matches(when, "Errors everywhere", "chat", NOW)
    assert not router.matches(when, "how do I debug my events?", "chat", NOW)
    assert not router.matches(when, "what plans are there?", "chat", NOW)


def test_curly_apostrophes_match_straight_ones() -> None:
    assert router.matches({"keywords": ["doesn't work"]}, "It doesn\u2019t work", "chat", NOW)


def test_pattern_is_a_case_insensitive_search() -> None:
    when = {"pattern": r"\border\s+#?\d{4,}"}
    assert router.matches(when, "Where is ORDER #12345?", "chat", NOW)
    assert not router.matches(when, "where is my order?", "chat", NOW)


def test_mode_single_or_list() -> None:
    assert router.matches({"mode": "livehelp"}, "hi", "livehelp", NOW)
    assert not router.matches({"mode": "livehelp"}, "hi", "chat", NOW)
    assert router.matches({"mode": ["voice", "video"]}, "hi", "video", NOW)


def test_all_conditions_of_a_rule_must_hold() -> None:
    when = {"mode": "livehelp", "keywords": ["refund"]}
    assert router.matches(when, "a refund please", "livehelp", NOW)
    assert not router.matches(when, "a refund please", "chat", NOW)
    assert not router.matches(when, "hello", "livehelp", NOW)
    assert not router.matches({}, "anything", "chat", NOW)


@pytest.mark.parametrize(
    ("utc", "is_open"),
    [
        (datetime(2026, 3, 4, 12, 59, tzinfo=UTC), False),  # Wed 07:59 EST
        (datetime(2026, 3, 4, 13, 0, tzinfo=UTC), True),  # Wed 08:00 EST: opens
        (datetime(2026, 3, 4, 22, 59, tzinfo=UTC), True),  # Wed 17:59 EST
        (datetime(2026, 3, 4, 23, 0, tzinfo=UTC), False),  # Wed 18:00 EST: closed
        (datetime(2026, 3, 7, 15, 0, tzinfo=UTC), False),  # Saturday
        # After the DST change (8 March 2026) 08:00 in New York is 12:00 UTC.
        (datetime(2026, 3, 9, 12, 0, tzinfo=UTC), True),
        (datetime(2026, 3, 9, 11, 59, tzinfo=UTC), False),
    ],
)
def test_business_hours_use_the_timezone_and_dst(utc: datetime, is_open: bool) -> None:
    assert router.is_open(HOURS, utc) is is_open
    assert router.matches({"outside_hours": HOURS}, "hi", "chat", utc) is (not is_open)


def test_overnight_hours_and_holidays() -> None:
    night = {"timezone": "UTC", "days": ["fri"], "open": "22:00", "close": "06:00"}
    assert router.is_open(night, datetime(2026, 3, 6, 23, 0, tzinfo=UTC))  # Fri 23:00
    assert router.is_open(night, datetime(2026, 3, 7, 5, 59, tzinfo=UTC))  # Sat 05:59
    assert not router.is_open(night, datetime(2026, 3, 7, 6, 0, tzinfo=UTC))
    assert not router.is_open(night, datetime(2026, 3, 5, 23, 0, tzinfo=UTC))  # Thursday
    holiday = {**HOURS, "holidays": ["2026-03-04"]}
    assert not router.is_open(holiday, NOW)


def test_first_matching_rule_wins_with_ack_copy_and_subject() -> None:
    definition = agent(routing=[
        {"when": {"keywords": ["refund"]}, "team": "billing"},
        {"when": {"pattern": "."}, "team": "support", "message": "Hi from {team}",
         "action": "handover"},
    ])
    first = router.route(definition, "I want a refund  now", "chat", NOW)
    assert first is not None
    assert (first.team, first.action) == ("billing", router.DEFAULT_ACTION)
    assert first.message == router.DEFAULT_ACK.replace("{team}", "billing")
    assert first.subject == "I want a refund now"
    second = router.route(definition, "hello", "chat", NOW)
    assert second is not None and (second.message, second.action) == (
        "Hi from support", "handover")
    assert router.route(agent(), "hello", "chat", NOW) is None


def test_long_messages_make_short_ticket_subjects() -> None:
    definition = agent(routing=[{"when": {"keywords": ["refund"]}, "team": "billing"}])
    decision = router.route(definition, "refund " + "x" * 500, "chat", NOW)
    assert decision is not None and len(decision.subject) == 120


# -- over gRPC --------------------------------------------------------------------------


async def test_routed_turn_creates_ticket_and_skips_generation(sb: Harness) -> None:
    call = sb.chat.StreamChat(chat_pb2.StreamChatRequest(turn=chat_pb2.TurnInput(
        message="I need to open a billing dispute about last month", agent="support-agent")),
        metadata=auth())
    events = [r.event async for r in call]
    kinds = [e.WhichOneof("kind") for e in events]
    assert kinds[0] == "turn_started" and kinds[-1] == "completed"
    assert "routed" in kinds and "usage" not in kinds and "action" not in kinds
    completed = events[-1].completed
    assert completed.status == events_pb2.TURN_STATUS_ROUTED
    assert completed.routing.action == "route_to_team"
    assert completed.routing.team == "billing"
    assert completed.routing.ticket_id.startswith("tkt_")
    assert "billing team" in completed.text and completed.model == "routing"
    tickets = await sb.core.store.list_tickets(sb.org_id, events[0].conversation_id)
    assert [(t["id"], t["team"]) for t in tickets] == [(completed.routing.ticket_id, "billing")]
    assert "billing dispute" in tickets[0]["subject"]


@pytest.mark.parametrize(
    ("utc", "after_hours"),
    [
        (datetime(2026, 3, 4, 15, 0, tzinfo=UTC), False),  # Wednesday 10:00 ET
        (datetime(2026, 3, 7, 15, 0, tzinfo=UTC), True),  # Saturday
        (datetime(2026, 3, 4, 23, 30, tzinfo=UTC), True),  # Wednesday 18:30 ET
    ],
)
async def test_livehelp_routing_follows_the_injected_clock(
    tmp_path: Path, utc: datetime, after_hours: bool
) -> None:
    harness = await Harness.start(tmp_path, clock=FixedClock(utc))
    try:
        reply = await harness.chat_once("Can I talk to someone?", agent="support-agent",
                                        mode="livehelp")
    finally:
        await harness.stop()
    assert reply.completed.routing.team == "support"
    assert reply.completed.routing.ticket_id
    assert ("offline right now" in reply.completed.text) is after_hours


async def test_chat_mode_is_not_routed(sb: Harness) -> None:
    reply = await sb.chat_once("Where can I download my invoices?", agent="support-agent")
    assert not reply.completed.routing.action
    assert reply.completed.status == events_pb2.TURN_STATUS_COMPLETED
    assert any(a.type == "citation" for a in reply.completed.actions)
