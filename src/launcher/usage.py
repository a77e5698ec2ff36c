"""`switchboard usage`: the usage ledger, per UTC day and model."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from core.clock import SystemClock
from core.config import CoreConfig
from core.pricing import Pricing
from core.store.factory import open_store
from launcher.options import add_database_option


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    usage = sub.add_parser("usage", help="show priced usage from the ledger")
    usage.add_argument("--org", default="demo", help="organisation slug")
    usage.add_argument("--days", type=int, default=30, help="how many days back (default 30)")
    add_database_option(usage)


def _usd(micros: int) -> str:
    return f"${micros // 1_000_000}.{micros % 1_000_000:06d}"


async def run(ns: argparse.Namespace, config: CoreConfig) -> int:
    store = open_store(config.database)
    await store.open()
    try:
        org = await store.get_org_by_slug(ns.org)
        if org is None:
            print(f"error: organisation {ns.org!r} not found", file=sys.stderr)
            return 2
        since = SystemClock().now() - timedelta(days=max(1, ns.days))
        rows = await store.usage_report(org.id, since)
        pricing = Pricing(store)
        print(f"{'day':<12}{'model':<24}{'turns':>7}{'unpriced':>10}{'prompt':>10}"
              f"{'completion':>12}{'cost (USD)':>16}")
        total = unpriced_total = 0
        unpriced_models: set[str] = set()
        for row in rows:
            total += int(row["cost_micros"] or 0)
            # Turns that cost nothing because their model has no price (a price of 0 is
            # a price): budgets do not see them.
            unpriced = 0
            if await pricing.lookup(org.id, row["model"] or "") is None:
                unpriced = int(row.get("zero_cost_turns") or 0)
            if unpriced:
                unpriced_models.add(row["model"] or "-")
            unpriced_total += unpriced
            print(f"{row['day']:<12}{(row['model'] or '-'):<24}{row['turns']:>7}"
                  f"{unpriced:>10}{row['prompt_tokens']:>10}{row['completion_tokens']:>12}"
                  f"{_usd(int(row['cost_micros'] or 0)):>16}")
        print(f"{'total':<12}{'':<24}{sum(r['turns'] for r in rows):>7}{unpriced_total:>10}"
              f"{'':>10}{'':>12}{_usd(total):>16}")
        if unpriced_total:
            print(f"{unpriced_total} unpriced turns (no price for: "
                  f"{', '.join(sorted(unpriced_models))}); add one with "
                  "`switchboard prices set`")
        return 0
    finally:
        await store.close()
