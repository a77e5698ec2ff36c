"""`switchboard prices`: the organisation's model price table (works on the store directly).

    switchboard prices set gpt-4o-mini --input 0.15 --output 0.60   # USD per 1M tokens
    switchboard prices set '*' --input 1 --output 2                 # fallback for any model
    switchboard prices list
    switchboard prices delete gpt-4o-mini

Amounts are parsed exactly (decimal, at most 6 places) into integer micro-dollars.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from core.clock import SystemClock
from core.config import CoreConfig
from core.flows.store import ModelPrice, flow_store
from core.pricing import FALLBACK_MODEL, MICROS_PER_USD, usd_to_micros
from core.store.factory import open_store
from launcher.options import add_database_option


def add_parser(sub: Any) -> None:
    prices = sub.add_parser("prices", help="manage the model price table (USD per 1M tokens)")
    prices_sub = prices.add_subparsers(dest="prices_command", required=True)
    set_ = prices_sub.add_parser("set", help="set a model's prices")
    set_.add_argument("model", help=f"model name as reported in usage, or {FALLBACK_MODEL!r} "
                                    "for the fallback price of unlisted models")
    set_.add_argument("--input", required=True, help="USD per 1M prompt tokens, e.g. 2.50")
    set_.add_argument("--output", required=True,
                      help="USD per 1M completion tokens, e.g. 10.00")
    list_ = prices_sub.add_parser("list", help="list the price table")
    delete = prices_sub.add_parser("delete", help="remove a model's prices")
    delete.add_argument("model", help="model name whose prices to remove")
    for p in (set_, list_, delete):
        p.add_argument("--org", default="demo", help="organisation slug")
        add_database_option(p)


def _usd(micros: int) -> str:
    whole, frac = divmod(micros, MICROS_PER_USD)
    digits = f"{frac:06d}".rstrip("0").ljust(2, "0")
    return f"{whole}.{digits}"


async def run(ns: argparse.Namespace, config: CoreConfig) -> int:
    store = open_store(config.database)
    await store.open()
    try:
        org = await store.get_org_by_slug(ns.org)
        if org is None:
            print(f"error: organisation {ns.org!r} not found", file=sys.stderr)
            return 2
        prices = flow_store(store)
        if ns.prices_command == "set":
            model = ns.model.strip()
            if not model or len(model) > 128:
                print("error: model must be 1 to 128 characters", file=sys.stderr)
                return 2
            try:
                price = ModelPrice(model, usd_to_micros(ns.input), usd_to_micros(ns.output))
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            await prices.set_model_price(org.id, price, SystemClock().now())
            print(f"{model}: input ${_usd(price.input_micros_per_mtok)} / output "
                  f"${_usd(price.output_micros_per_mtok)} per 1M tokens")
            return 0
        if ns.prices_command == "delete":
            if not await prices.delete_model_price(org.id, ns.model):
                print(f"error: no price for {ns.model!r}", file=sys.stderr)
                return 2
            print(f"deleted {ns.model}")
            return 0
        rows = await prices.list_model_prices(org.id)
        print("model\tinput_usd_per_1m\toutput_usd_per_1m")
        for row in rows:
            print(f"{row.model}\t{_usd(row.input_micros_per_mtok)}\t"
                  f"{_usd(row.output_micros_per_mtok)}")
        return 0
    finally:
        await store.close()
