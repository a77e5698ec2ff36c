"""The operator console and the visitor's widget in one real browser, two pages at once:
the visitor asks for a person, the operator signs in, claims the conversation from the
live queue and replies; the reply appears in the widget, the visitor's answer in the
console, and after release the bot answers again."""

from __future__ import annotations

from browser_harness import HostPages, run_scenario, widget_page

from core.domain import KeyKind
from harness import WIDGET, Harness


async def test_console_and_widget_exchange_messages(sb: Harness, host: HostPages,
                                                    cdp: str) -> None:
    await sb.scripted_agent(reply="The bot is back.")
    _, token = await sb.core.auth.create_key(sb.org_id, KeyKind.OPERATOR, sb.core.ids,
                                             name="Ann")
    page = host.add("handoff.html", widget_page(sb.base_url, WIDGET, agent="scripted"))
    seen = await run_scenario(
        cdp, "handoff", page=page, console=f"{sb.base_url}/console", token=token,
        ask="I need a person", reply="Hi, I'm Ann. Let me look.", answer="Thank you, Ann",
        after="Is the bot there?", second="Found it: fixed.")
    assert seen["queued"] == 1
    assert seen["shown"] == {"who": "Ann", "text": "Hi, I'm Ann. Let me look."}
    assert seen["answer"]["text"] == ""  # a person had it: no generated reply
    assert {"role": "operator", "text": "Hi, I'm Ann. Let me look."} in seen["consoleLog"]
    assert seen["consoleLog"][-1] == {"role": "user", "text": "Thank you, Ann"}
    assert seen["afterReload"] == ["Hi, I'm Ann. Let me look.", "Found it: fixed."]
    assert seen["afterRelease"]["text"] == "The bot is back."
    assert seen["errors"] == []
