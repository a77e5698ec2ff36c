"""Tools built into the flow engine (besides the agent's own server and webhook tools).

`lookup_order` looks an order up in the bundled demo order book (src/core/demo/orders.json);
flows cannot point it at other files. Order numbers match case-insensitively, with or
without the `ACM-` prefix and with spaces ignored. Real deployments use a webhook tool.
Result: `{found: true, order_id, status, carrier, tracking_number, eta, items}` or
`{found: false, order_id}`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from functools import lru_cache
from importlib import resources
from typing import Any

FlowTool = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

_ORDER_DIGITS = re.compile(r"^(?:ACM-?)?(\d{4,10})$")


@lru_cache(maxsize=1)
def _orders() -> dict[str, dict[str, Any]]:
    text = (resources.files("core.demo") / "orders.json").read_text(encoding="utf-8")
    return {str(o["order_id"]).upper(): o for o in json.loads(text)}


def normalize_order_id(raw: str) -> str:
    text = re.sub(r"\s+", "", raw).upper()
    match = _ORDER_DIGITS.match(text)
    return f"ACM-{match.group(1)}" if match else text


async def lookup_order(args: dict[str, Any]) -> dict[str, Any]:
    order_id = normalize_order_id(str(args.get("order_id", "")))
    order = _orders().get(order_id)
    if order is None:
        return {"found": False, "order_id": order_id}
    return {"found": True, **order}


FLOW_TOOLS: dict[str, FlowTool] = {"lookup_order": lookup_order}
