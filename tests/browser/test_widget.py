"""The widget in a real browser, embedded on a page of another origin."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from browser_harness import HostPages, run_scenario, widget_page

from harness import SECRET, WIDGET, Harness, with_engine
from switchboard.v1 import chat_pb2

REPLY = ("Here is the **answer**, streamed word by word: first set up tracking, then "
         "check Live View, and finally export the report.")
CITATION = {"type": "citation",
            "payload": {"title": "Event Tracking", "url": "https://help.example/articles/events"}}


async def _agent(sb: Harness, reply: str = REPLY, delay_ms: int = 25, **options: object) -> None:
    await sb.scripted_agent(reply=reply, delay_ms=delay_ms, actions=[CITATION], **options)


async def test_embedded_on_another_origin_streams_progressively(
        sb: Harness, host: HostPages, cdp: str) -> None:
    await _agent(sb)
    page = host.add("embed.html", widget_page(sb.base_url, WIDGET, agent="scripted"))
    seen = await run_scenario(cdp, "embed", page=page, question="How do I track events?")
    user, answer = seen["log"]
    assert user == {"role": "user", "text": "How do I track events?", "links": [],
                    "buttons": [], "busy": False}
    plain = REPLY.replace("**", "")
    assert answer["role"] == "assistant" and answer["text"] == plain
    # Rendered as it arrived: several growing prefixes of the final text.
    snapshots = seen["snapshots"]
    assert len(snapshots) >= 3, snapshots
    assert all(plain.startswith(s) for s in snapshots)
    assert [len(s) for s in snapshots] == sorted({len(s) for s in snapshots})
    # The citation is a link; the host page's styles did not reach into the shadow root.
    assert answer["links"] == [{"href": CITATION["payload"]["url"], "text": "Event Tracking"}]
    assert "comic" not in seen["hostStyles"].lower()
    assert "comic" in seen["pageStyles"].lower()
    assert seen["consoleErrors"] == []


async def test_refused_origin_says_why(sb: Harness, host: HostPages, cdp: str) -> None:
    await _agent(sb)
    org = await sb.core.store.get_org(sb.org_id)
    assert org is not None
    from dataclasses import replace

    await sb.core.store.update_org_settings(
        sb.org_id, replace(org.settings, allowed_origins=("https://www.example.com",)))
    page = host.add("refused.html", widget_page(sb.base_url, WIDGET, agent="scripted"))
    seen = await run_scenario(cdp, "refused", page=page, question="hello")
    assert seen["error"] == {"name": "SwitchboardError", "code": "origin_not_allowed",
                             "status": 403}
    assert "origin_not_allowed" in seen["log"][-1]["text"]
    assert seen["log"][-1]["role"] == "notice"


async def test_window_switchboard_api(sb: Harness, host: HostPages, cdp: str) -> None:
    await _agent(sb, delay_ms=0)
    page = host.add("api.html", widget_page(sb.base_url, WIDGET, agent="scripted"))
    seen = await run_scenario(cdp, "api", page=page, question="from the page")
    assert seen["hiddenAtStart"] and seen["openAfterOpen"] and seen["hiddenAfterClose"]
    assert seen["reply"] == {"text": REPLY, "actions": [CITATION]}
    assert [m["role"] for m in seen["log"]] == ["user", "assistant"]
    assert seen["afterReset"] == {"log": [], "stored": []}


async def test_reload_keeps_the_conversation(sb: Harness, host: HostPages, cdp: str) -> None:
    await _agent(sb, delay_ms=0)
    page = host.add("reload.html", widget_page(sb.base_url, WIDGET, agent="scripted"))
    seen = await run_scenario(cdp, "reload", page=page, questions=["first", "second"])
    assert [(m["role"], m["text"]) for m in seen["afterReload"]] == [
        ("user", "first"), ("assistant", REPLY.replace("**", ""))]
    assert seen["afterReload"][1]["links"][0]["href"] == CITATION["payload"]["url"]
    (stored,) = [json.loads(v) for k, v in seen["stored"].items() if k.startswith("switchboard:")]
    session = stored["sessionId"]
    assert re.fullmatch(r"chat_[0-9a-f-]{36}", session)
    assert len(stored["messages"]) == 4
    # The second message continued the same conversation on the server.
    listed = await sb.chat.ListMessages(
        chat_pb2.ListMessagesRequest(conversation_id=session),
        metadata=[("authorization", f"Bearer {SECRET}")])
    assert [m.content for m in listed.messages if m.role == "user"] == ["first", "second"]


async def test_reload_mid_answer_picks_the_answer_up(
        tmp_path: Path, host: HostPages, cdp: str) -> None:
    # The turn outlives the page that left (reattach grace), so the reload can resume it.
    sb = await Harness.start(tmp_path, engine=with_engine(detach_grace_s=10.0))
    try:
        long_reply = "This answer takes a while to arrive, word after word, " * 4
        await _agent(sb, reply=long_reply.strip(), delay_ms=40)
        page = host.add("midway.html", widget_page(sb.base_url, WIDGET, agent="scripted"))
        seen = await run_scenario(cdp, "reloadMidAnswer", page=page, question="tell me",
                                  partial=15)
        assert len(seen["before"]) < len(long_reply.strip())  # reloaded mid-answer
        assert [(m["role"], m["text"]) for m in seen["log"]] == [
            ("user", "tell me"), ("assistant", long_reply.strip())]
        assert seen["log"][1]["links"][0]["href"] == CITATION["payload"]["url"]
        (stored,) = [json.loads(v) for k, v in seen["stored"].items()
                     if k.startswith("switchboard:")]
        assert "pending" not in stored and len(stored["messages"]) == 2
    finally:
        await sb.stop()


async def test_citations_escalation_and_routing(sb: Harness, host: HostPages, cdp: str) -> None:
    # The demo kb agent: a cited answer, then an escalation offer whose button routes the
    # conversation to the support team (livehelp) and shows the acknowledgement.
    page = host.add("actions.html", widget_page(sb.base_url, WIDGET))
    seen = await run_scenario(cdp, "actions", page=page,
                              cited="How do I set up event tracking?",
                              escalate="Can I talk to a real person?")
    cited = seen["beforeClick"][1]
    assert cited["links"] and all(a["href"].startswith("https://") for a in cited["links"])
    offer = seen["beforeClick"][3]
    assert offer["buttons"] == ["Talk to a person"]
    routed = seen["afterClick"][-1]
    assert routed["role"] == "notice"
    assert "support team" in routed["text"]
    assert seen["afterClick"][-2] == {"role": "user", "text": "I'd like to talk to a person.",
                                      "links": [], "buttons": [], "busy": False}


HOSTILE = (
    "Hi <img src=x onerror=\"window.__pwned='img'\"> there.\n\n"
    "- [click me](javascript:window.__pwned='link')\n"
    "- [data](data:text/html,<script>alert(1)</script>)\n"
    "- [safe](https://example.com/docs?a=1&b=2)\n\n"
    "**<b onmouseover=alert(1)>bold</b>** and `<script>window.__pwned='code'</script>`\n\n"
    "<script>window.__pwned='script'</script><iframe src=\"javascript:alert(1)\"></iframe>"
)


async def test_hostile_markdown_renders_inert(sb: Harness, host: HostPages, cdp: str) -> None:
    await sb.scripted_agent(reply=HOSTILE)
    page = host.add("hostile.html", widget_page(sb.base_url, WIDGET, agent="scripted"))
    question = "<img src=x onerror=\"window.__pwned='user'\"> [x](javascript:alert(1))"
    seen = await run_scenario(cdp, "hostile", page=page, question=question)
    assert seen["pwned"] is None and seen["dialogs"] == []
    inspect = seen["inspect"]
    assert inspect["images"] == inspect["scripts"] == inspect["iframes"] == 0
    assert inspect["handlers"] == []
    # Only the https link became a link; the others stay visible as text.
    assert inspect["links"] == ["https://example.com/docs?a=1&b=2"]
    assert inspect["lists"] == 3
    assert inspect["strong"] == ["<b onmouseover=alert(1)>bold</b>"]
    assert "<script>window.__pwned='code'</script>" in inspect["code"]
    user, answer = seen["log"]
    assert user["text"] == question
    assert "<img src=x onerror=" in answer["text"] and "click me" in answer["text"]


@pytest.mark.parametrize("theme", ["light", "dark"])
async def test_keyboard_live_region_labels_contrast_and_320px(
        sb: Harness, host: HostPages, cdp: str, theme: str) -> None:
    await _agent(sb, delay_ms=0)
    page = host.add("keyboard.html", widget_page(
        sb.base_url, WIDGET, agent="scripted", before="<button>Site button</button>",
        extra=f' data-theme="{theme}"'))
    seen = await run_scenario(cdp, "keyboard", page=page, question="keyboard only")
    assert seen["focusTrail"][-1] == "launcher", seen["focusTrail"]
    assert seen["afterOpen"] == "textarea"  # focus moved into the panel
    assert seen["expanded"] == "true"
    assert seen["live"]["live"] == "polite"
    assert seen["live"]["text"] == "Assistant: " + REPLY
    for control in seen["labels"]:
        assert control["name"], control
    for where, ratio in seen["contrast"].items():
        assert ratio >= 4.5, (where, ratio)
    assert {".msg.user .body", ".msg.assistant .body", ".send", "header h2"} <= set(
        seen["contrast"])
    assert seen["themeBg"] == {"light": "#ffffff", "dark": "#111827"}[theme]
    assert seen["afterEscape"] == {"hidden": True, "focus": "launcher"}
    narrow = seen["narrow"]
    assert narrow["left"] >= 0 and narrow["right"] <= 320 and narrow["top"] >= 0
    assert narrow["sendRight"] <= 320 and narrow["inputWidth"] >= 150
    assert narrow["scrollWidth"] <= 320


@pytest.mark.parametrize("same_origin", [False, True])
async def test_strict_content_security_policy(sb: Harness, host: HostPages, cdp: str,
                                              same_origin: bool) -> None:
    await _agent(sb, delay_ms=0)
    if same_origin:
        page = sb.base_url + "/"  # the demo page: served with script-src 'self'
        question = "How do I set up event tracking?"
    else:
        shim = sb.base_url
        csp = (f"default-src 'none'; script-src {shim}; style-src {shim}; "
               f"connect-src {shim}; img-src data:; base-uri 'none'")
        # No inline style either: the page itself must not be what violates the policy.
        page = host.add("csp.html", widget_page(shim, WIDGET, agent="scripted", style=""),
                        headers={"Content-Security-Policy": csp})
        question = "strict"
    seen = await run_scenario(cdp, "csp", page=page, question=question)
    assert seen["violations"] == []
    assert seen["reply"]["text"]
    assert seen["styled"] == "50%"  # the widget's stylesheet loaded under the policy
