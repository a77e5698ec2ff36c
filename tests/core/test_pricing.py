"""Token pricing: exact integer micros, the fallback row, the chat turn pricer, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.events import Usage
from core.flows.store import ModelPrice
from core.pricing import (
    FALLBACK_MODEL,
    MAX_PRICE_MICROS_PER_MTOK,
    Pricing,
    cost_micros,
    micros_to_usd,
    usd_to_micros,
)
from core.store.base import TurnCommit
from harness import Harness
from launcher.cli import main


def test_cost_is_exact_integer_micros() -> None:
    price = ModelPrice("m", usd_to_micros("2.50"), usd_to_micros("10.00"))
    assert (price.input_micros_per_mtok, price.output_micros_per_mtok) == (2_500_000,
                                                                           10_000_000)
    assert cost_micros(price, 1234, 567) == 8755  # 3085 + 5670
    assert cost_micros(price, 1_000_000, 1_000_000) == 12_500_000
    assert micros_to_usd(8755) == 0.008755


def test_rounding_is_half_up_per_usage() -> None:
    price = ModelPrice("m", usd_to_micros("0.15"), usd_to_micros("0.60"))
    assert cost_micros(price, 3, 0) == 0  # 0.45 micros
    assert cost_micros(price, 4, 0) == 1  # 0.60 micros
    assert cost_micros(price, 10, 0) == 2  # 1.5 micros, half up
    assert cost_micros(price, 0, 0) == 0


def test_many_small_costs_do_not_drift() -> None:
    # 0.1 + 0.2 style float error cannot happen: everything is an integer until display.
    price = ModelPrice("m", usd_to_micros("0.1"), usd_to_micros("0.2"))
    total = sum(cost_micros(price, 1_000_000, 1_000_000) for _ in range(10_000))
    assert total == 3_000_000_000
    assert micros_to_usd(total) == 3000.0


@pytest.mark.parametrize("text", ["abc", "-1", "0.0000001", "NaN", "Infinity"])
def test_bad_prices_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        usd_to_micros(text)


def test_price_ceiling_boundary() -> None:
    top = MAX_PRICE_MICROS_PER_MTOK // 1_000_000
    assert usd_to_micros(str(top)) == MAX_PRICE_MICROS_PER_MTOK
    with pytest.raises(ValueError):
        usd_to_micros(f"{top}.000001")


async def test_lookup_uses_exact_model_then_fallback_then_unpriced(sb: Harness) -> None:
    store = sb.core.store
    pricing = Pricing(store)
    usage = Usage(1_000_000, 0, "gpt-x")
    assert (await pricing.price(sb.org_id, usage)).cost_micros == 0  # unpriced
    await store.set_model_price(  # type: ignore[attr-defined]
        sb.org_id, ModelPrice(FALLBACK_MODEL, 1_000_000, 0), sb.core.clock.now())
    assert (await pricing.price(sb.org_id, usage)).cost_micros == 1_000_000
    await store.set_model_price(  # type: ignore[attr-defined]
        sb.org_id, ModelPrice("gpt-x", 3_000_000, 0), sb.core.clock.now())
    assert (await pricing.price(sb.org_id, usage)).cost_micros == 3_000_000
    # Another organisation's table does not apply.
    assert (await pricing.price("other-org", usage)).cost_micros == 0


async def test_chat_turns_are_priced_by_the_table(sb: Harness) -> None:
    await sb.scripted_agent(reply="one two three four")
    await sb.core.store.set_model_price(  # type: ignore[attr-defined]
        sb.org_id, ModelPrice("scripted", 1_000_000, 2_000_000), sb.core.clock.now())
    reply = await sb.chat_once("hello there", agent="scripted")
    usage = reply.completed.usage
    assert usage.model == "scripted" and usage.total_tokens > 0
    expected = (usage.prompt_tokens * 1_000_000 + usage.completion_tokens * 2_000_000
                + 500_000) // 1_000_000
    assert usage.cost_micros == expected > 0


def test_prices_cli_sets_and_lists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "cli.db")
    assert main(["keys", "create", "--org", "acme", "--database", db]) == 0
    assert main(["prices", "set", "gpt-4o-mini", "--input", "0.15", "--output", "0.60",
                 "--org", "acme", "--database", db]) == 0
    assert main(["prices", "set", "bad", "--input", "0.0000001", "--output", "1",
                 "--org", "acme", "--database", db]) == 2
    capsys.readouterr()
    assert main(["prices", "list", "--org", "acme", "--database", db]) == 0
    out = capsys.readouterr().out
    assert "gpt-4o-mini\t0.15\t0.60" in out and "bad" not in out
    assert main(["prices", "delete", "gpt-4o-mini", "--org", "acme", "--database", db]) == 0


def test_usage_cli_shows_unpriced_turns(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Turns of a model with no price are listed as unpriced; a dated model name is priced
    by its family's row."""
    import asyncio

    from core.domain import ConversationRecord, TurnRecord
    from core.store.base import TurnBegin, UsageEntry
    from core.store.factory import open_store

    db = str(tmp_path / "usage.db")
    assert main(["keys", "create", "--org", "acme", "--database", db]) == 0
    assert main(["prices", "set", "gpt-4o-mini", "--input", "0.15", "--output", "0.60",
                 "--org", "acme", "--database", db]) == 0

    async def record() -> None:
        from datetime import UTC, datetime

        store = open_store(db)
        await store.open()
        try:
            org = await store.get_org_by_slug("acme")
            assert org is not None
            pricing = Pricing(store)
            now = datetime.now(UTC)
            for i, model in enumerate(["gpt-4o-mini-2024-07-18", "llama-3.1-8b",
                                       "llama-3.1-8b"]):
                usage = await pricing.price(org.id, Usage(1000, 100, model))
                # A turn is committed under its claim on the conversation (begun first).
                await store.begin_turn(TurnBegin(
                    turn=TurnRecord(f"t{i}", "c", org.id, "running", "a", 0, 0, now, now),
                    new_conversation=ConversationRecord(
                        "c", org.id, "a", "u", "open", 0, now, now) if i == 0 else None,
                ))
                await store.commit_turn(TurnCommit(
                    turn_id=f"t{i}", conversation_id="c", status="completed", last_seq=0,
                    updated_at=now, usage=UsageEntry(
                        org.id, "u", "c", f"t{i}", model, usage.prompt_tokens,
                        usage.completion_tokens, usage.cost_micros, now)))
            assert pricing.unpriced_turns == 2
        finally:
            await store.close()

    asyncio.run(record())
    capsys.readouterr()
    assert main(["usage", "--org", "acme", "--database", db]) == 0
    out = capsys.readouterr().out
    priced = next(line for line in out.splitlines() if "gpt-4o-mini-2024-07-18" in line)
    assert priced.split()[2:4] == ["1", "0"]  # 1 turn, 0 unpriced
    assert "$0.000210" in priced  # 1000 * 0.15 + 100 * 0.60 micros
    llama = next(line for line in out.splitlines() if "llama-3.1-8b" in line)
    assert llama.split()[2:4] == ["2", "2"]
    assert "2 unpriced turns (no price for: llama-3.1-8b)" in out
