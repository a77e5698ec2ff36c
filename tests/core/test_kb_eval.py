"""Evaluation of the offline `kb` agent on customer-worded questions, and the README's answers.

`kb_heldout.jsonl` (129 questions: 99 in scope, 30 out) was written and committed before any
weight or threshold of the hybrid retriever was chosen; nothing is tuned on it. `kb_tuning.jsonl`
(208 questions) is where the fusion constants and the confidence model were chosen;
`kb_blind3.jsonl` (80) is a second held-out set, written later without reading either. Each
line is {"q", "article": file name or null, "also": [other articles that answer it too]}.

Figures are printed outside pytest's capture so they show in `make test`:
in-scope accuracy (right article, answered without hedging), hedged rate (right article, but
hedged), out-of-scope escalation, the per-component ranking accuracy (BM25 alone, dense alone,
fused) and a reliability table (stated confidence per bin against observed accuracy).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from core import knowledge
from core.knowledge import KnowledgeBase, load_knowledge_base
from core.providers import kb as kb_module
from core.providers import kb_dense, kb_text
from core.providers.base import ContextEntry
from core.providers.kb import KbProvider

ROOT = Path(__file__).resolve().parents[2]
KB_DIR = ROOT / "src" / "core" / "demo" / "kb"
DATA = ROOT / "tests" / "data"

# Floors asserted on the held-out set: what the agent measurably reaches there today (see
# docs/agents.md, "Evaluation"), so a regression fails the suite. The targets
# (in-scope 0.85, out-of-scope 0.90) are not reached yet and are printed next to them.
HELDOUT_IN_SCOPE_FLOOR = 0.60
HELDOUT_OUT_OF_SCOPE_FLOOR = 0.85
TARGET_IN_SCOPE, TARGET_OUT_OF_SCOPE = 0.85, 0.90
# `kb_blind3.jsonl` (80 questions: 63 in scope, 17 out) was written and labelled on
# 2026-12-02 before any result on it was seen; nothing has been tuned on it since. Floors
# a little under what the agent measured on it then (0.71 answered, 0.82 escalated).
BLIND_IN_SCOPE_FLOOR = 0.67
BLIND_OUT_OF_SCOPE_FLOOR = 0.76


@dataclass
class Scores:
    answered: float  # in scope: right article, not hedged
    hedged: float  # in scope: right article, hedged
    escalated: float  # out of scope: escalated
    components: dict[str, float]  # ranking accuracy of bm25 / dense / fused (top article)
    bins: list[tuple[float, float, int, float]]  # (low, mean stated, n, observed accuracy)


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_knowledge_base(KB_DIR)


def load(name: str) -> list[dict[str, object]]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def evaluate(kb: KnowledgeBase, name: str) -> Scores:
    provider = KbProvider(kb)
    index = kb_module._build_index(kb)
    answered = hedged = in_scope = escalated = out_scope = 0
    components = {"bm25": 0, "dense": 0, "fused": 0}
    stated: list[tuple[float, bool]] = []
    for item in load(name):
        question = str(item["q"])
        article = item["article"]
        also = item.get("also", [])
        assert isinstance(also, list)
        good = {str(article), *map(str, also)} if article else set()
        reply = provider.answer(question)
        actions = (*reply.actions, *reply.trailing)
        cited = [a.payload["slug"] for a in actions if a.type == "citation"]
        right = bool(cited) and cited[0] in good
        stated.append((reply.confidence, right))
        if article:
            in_scope += 1
            answered += right and not reply.escalate
            hedged += right and reply.escalate
            normal = kb_text.normalise(question)
            query = kb_module._build_query(normal, index)
            found = kb_module._retrieve(normal, query, query.clauses, index)
            if found is not None:
                lexical = max(range(len(found.bm25)), key=lambda i: (found.bm25[i], -i))
                cosine = index.vectors @ kb_dense.encoder().encode([normal])[0]
                components["bm25"] += found.bm25[lexical] > 0 and (
                    index.passages[lexical].slug in good
                )
                components["dense"] += index.passages[int(np.argmax(cosine))].slug in good
                components["fused"] += index.passages[found.order[0]].slug in good
        else:
            out_scope += 1
            escalated += reply.escalate
    bins = []
    edges = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01)
    for low, high in itertools.pairwise(edges):
        members = [(c, r) for c, r in stated if low <= c < high]
        if members:
            bins.append((low, sum(c for c, _ in members) / len(members), len(members),
                         sum(r for _, r in members) / len(members)))
    return Scores(
        answered / in_scope, hedged / in_scope, escalated / out_scope,
        {k: v / in_scope for k, v in components.items()}, bins,
    )


def show(capsys: pytest.CaptureFixture[str], name: str, s: Scores) -> None:
    with capsys.disabled():
        print(
            f"\n[kb eval] {name}: in-scope answered {s.answered:.2f}, hedged {s.hedged:.2f}, "
            f"out-of-scope escalated {s.escalated:.2f} | ranking (top article): "
            + ", ".join(f"{k} {v:.2f}" for k, v in s.components.items())
        )
        for low, mean, n, observed in s.bins:
            print(f"[kb eval]   confidence bin >= {low:.1f}: n={n:3d} stated {mean:.2f} "
                  f"observed {observed:.2f}")


def test_tuning_set(kb: KnowledgeBase, capsys: pytest.CaptureFixture[str]) -> None:
    scores = evaluate(kb, "kb_tuning.jsonl")
    show(capsys, "kb_tuning.jsonl", scores)
    assert scores.answered >= 0.75 and scores.escalated >= 0.85


def test_heldout_set_floors(kb: KnowledgeBase, capsys: pytest.CaptureFixture[str]) -> None:
    scores = evaluate(kb, "kb_heldout.jsonl")
    show(capsys, "kb_heldout.jsonl (held out)", scores)
    with capsys.disabled():
        print(f"[kb eval]   issue targets: in-scope {TARGET_IN_SCOPE}, "
              f"out-of-scope {TARGET_OUT_OF_SCOPE}")
    assert scores.answered >= HELDOUT_IN_SCOPE_FLOOR
    assert scores.escalated >= HELDOUT_OUT_OF_SCOPE_FLOOR
    # Calibration: answers stated at 0.8 or more are right at least 80% of the time.
    high = [(n, observed) for low, _, n, observed in scores.bins if low >= 0.8]
    total = sum(n for n, _ in high)
    assert total and sum(n * o for n, o in high) / total >= 0.8


def test_blind_set_floors(kb: KnowledgeBase, capsys: pytest.CaptureFixture[str]) -> None:
    scores = evaluate(kb, "kb_blind3.jsonl")
    show(capsys, "kb_blind3.jsonl (blind)", scores)
    assert scores.answered >= BLIND_IN_SCOPE_FLOOR
    assert scores.escalated >= BLIND_OUT_OF_SCOPE_FLOOR


# --- The README's questions -------------------------------------------------------------


def test_readme_business_hours(kb: KnowledgeBase) -> None:
    reply = KbProvider(kb).answer("What are your business hours?")
    assert "Monday to Friday, 8:00 to 18:00" in reply.text and "ET" in reply.text
    assert not reply.escalate and reply.trailing[0].payload["slug"] == "business-hours"
    assert not reply.text.startswith(("Open it", "It "))


def test_readme_reset_password(kb: KnowledgeBase) -> None:
    reply = KbProvider(kb).answer("How do I reset my password?")
    assert "click Forgot password?" in reply.text
    assert "reset link" in reply.text  # the step after it, in order
    assert reply.text.index("Forgot password?") < reply.text.index("reset link")
    assert not reply.escalate and reply.trailing[0].payload["slug"] == "password-reset"


def test_readme_pro_price(kb: KnowledgeBase) -> None:
    reply = KbProvider(kb).answer("How much does the Pro plan cost?")
    assert "$79/month" in reply.text
    assert "$1,500" not in reply.text  # only the row asked about
    assert not reply.escalate and reply.confidence >= 0.5
    assert reply.trailing[0].payload["slug"] == "plans-and-pricing"


def test_readme_export(kb: KnowledgeBase) -> None:
    reply = KbProvider(kb).answer("How do I export my data?")
    assert "choose Export > CSV" in reply.text
    assert not reply.escalate and reply.trailing[0].payload["slug"] == "data-export"


@pytest.mark.parametrize(
    "message", ["Tell me a long story", "What's a good recipe for banana bread?"]
)
def test_readme_off_topic_escalates(kb: KnowledgeBase, message: str) -> None:
    reply = KbProvider(kb).answer(message)
    assert reply.escalate and not reply.trailing
    assert reply.actions[0].payload["reason"] == "low_confidence"
    assert reply.confidence < 0.5


def test_readme_real_person(kb: KnowledgeBase) -> None:
    reply = KbProvider(kb).answer("Can I talk to a real person?")
    assert reply.escalate and reply.actions[0].payload == {"reason": "user_requested"}


def test_readme_event_tracking(kb: KnowledgeBase) -> None:
    reply = KbProvider(kb).answer("How do I set up event tracking?")
    assert not reply.escalate and reply.trailing[0].payload["slug"] == "event-tracking"
    assert "acme.track" in reply.text


def test_readme_google_ads_context(kb: KnowledgeBase) -> None:
    context = {
        "integrations": ContextEntry(
            "Connected Integrations", "integration",
            {"google_ads": {"connected": True, "status": "error", "error": "Token expired"}},
        )
    }
    reply = KbProvider(kb).answer("Why is my Google Ads integration not working?", context)
    assert reply.text.startswith("I can see in your Connected Integrations")
    assert "Reconnect" in reply.text and not reply.escalate


def test_multi_part_question_answers_both_parts(kb: KnowledgeBase) -> None:
    reply = KbProvider(kb).answer("how much is pro and does it include live chat")
    slugs = [a.payload["slug"] for a in reply.trailing]
    assert slugs == ["plans-and-pricing", "business-hours"]
    assert "$79/month" in reply.text and "Live chat: included on the Pro" in reply.text
    assert reply.text.index("$79") < reply.text.index("Live chat")  # in the order asked


def test_multi_part_question_names_the_unanswered_part(kb: KnowledgeBase) -> None:
    reply = KbProvider(kb).answer("reset my password and also what's the weather in paris")
    assert "Forgot password?" in reply.text
    assert [a.payload["slug"] for a in reply.trailing] == ["password-reset"]
    assert 'I couldn\'t find an answer to "what\'s the weather in paris"' in reply.text
    assert reply.escalate


def test_multi_part_hedges_an_unsure_part(kb: KnowledgeBase) -> None:
    reply = KbProvider(kb, threshold=1.0).answer("how much is pro? and when are you open")
    assert reply.text.count("I'm not completely sure about") == 2 and reply.escalate


def test_multi_part_limit() -> None:
    parts = ["how much is pro", "when are you open", "how do i export", "how do i invite"]
    assert kb_module._split_parts("? ".join(parts[: kb_module.MAX_PARTS])) == parts
    five = "? ".join([*parts, "where are invoices"])
    assert kb_module._split_parts(five) == [five]


def test_answers_are_deterministic(kb: KnowledgeBase) -> None:
    first = [KbProvider(kb).answer(q) for q in ("How do I export my data?", "pw reset")]
    again = [KbProvider(kb).answer(q) for q in ("How do I export my data?", "pw reset")]
    assert first == again


def test_typo_correction_uses_the_vocabulary() -> None:
    typos = kb_text.TypoIndex(["password", "invoice", "integration"])
    assert typos.correct("pasword") == "password"
    assert typos.correct("intergration") == "integration"
    assert typos.correct("banana") is None
    assert typos.correct("pwd") is None  # too short to guess


def test_dense_model_loads_from_site_packages() -> None:
    assert (kb_dense.model_dir() / "weights" / "l2_supercat_256.safetensors").is_file()
    vectors = kb_dense.encoder().encode(["reset my password", ""])
    assert vectors.shape == (2, 256)
    assert abs(float(np.linalg.norm(vectors[0])) - 1.0) < 1e-4 and not vectors[1].any()


def test_edited_articles_are_picked_up_without_restart(tmp_path: Path) -> None:
    article = tmp_path / "shipping.md"
    article.write_text("# Shipping\n\nWe ship parcels with Zephyr Couriers worldwide.\n")
    provider = KbProvider(load_knowledge_base(tmp_path))
    assert "Zephyr" in provider.answer("which courier ships parcels?").text
    article.write_text("# Shipping\n\nWe ship parcels with Nimbus Freight worldwide.\n")
    stamp = time.time() + 5
    os.utime(article, (stamp, stamp))
    root = str(tmp_path.resolve())
    # Checked less than RECHECK_INTERVAL_S ago: the files are not looked at again yet.
    knowledge._checked[root] = time.monotonic()
    assert "Zephyr" in provider.answer("which courier ships parcels?").text
    # RECHECK_INTERVAL_S later: one look at the files, and the edit is in.
    knowledge._checked[root] = time.monotonic() - knowledge.RECHECK_INTERVAL_S
    assert "Nimbus" in provider.answer("which courier ships parcels?").text
    (tmp_path / "returns.md").write_text("# Returns\n\nReturn parcels within 30 days.\n")
    knowledge._checked[root] = time.monotonic() - knowledge.RECHECK_INTERVAL_S
    assert "30 days" in provider.answer("how long do I have to return parcels?").text


def test_index_is_built_once_per_change(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Alpha\n\nAlpha widgets are blue.\n")
    first = load_knowledge_base(tmp_path)
    assert load_knowledge_base(tmp_path) is first
    assert kb_module._build_index(first) is kb_module._build_index(load_knowledge_base(tmp_path))


def test_sentences_are_self_contained(tmp_path: Path) -> None:
    """The sentence with the price starts with "It": the one naming "it" comes with it."""
    (tmp_path / "adapter.md").write_text(
        "# Zorblax adapter\n\n## Buying\n\nThe Zorblax adapter ships with every starter kit "
        "we sell in Europe. It costs $12 per month and renews automatically.\n"
    )
    reply = KbProvider(load_knowledge_base(tmp_path)).answer("what's the monthly price?")
    assert "It costs $12 per month" in reply.text
    assert reply.text.startswith("The Zorblax adapter ships")
