"""The offline `kb` provider: extractive, grounded answers from an agent's knowledge base.

Pipeline for one turn:

1. **Index** (built once per `KnowledgeBase`, cached; `core.knowledge.current` swaps in a
   reload when the files change): every article is split at its headings into passages
   (article title + section heading + body); each passage into answerable units
   (sentences, list items, table rows, code blocks). Terms are lower-cased, stop words
   dropped and Snowball-stemmed (`kb_text`). Every passage and unit also gets a dense
   embedding (`kb_dense`: WordLlama static token embeddings, mean-pooled).
2. **Query**: one clause per term of the last user message (weight 1; general-English
   words 0.5, numbers 0.3), with a typo correction (`kb_text.TypoIndex`, rapidfuzz) or
   stem back-off for unknown words (0.8) and general support synonyms (0.4); a clause
   scores its best alternative. Terms of request-context entries that bear on the
   question (share a term with it) are added at 0.5 - see `kb_text.context_facts`. A
   message asking several things ("X? Y", "X and also Y") is split and each part answered
   (`_split_parts`).
3. **Lexical ranking**: a compact own Okapi BM25 (k1 = 1.2, b = 0.75) over the passage text
   with the heading weighted 2 (BM25F-style), plus the article title as a separately
   saturated field, plus a proximity bonus, then article-level aggregation::

       own(p)   = BM25F(p) + BM25(title) + sum(min(idf(a), idf(b)))
                  over pairs {a, b} of adjacent message terms also adjacent in p
       own(p)  *= 0.75 if p is an overview (text before the first heading)
       score(p) = own(p) + 1.0 * BM25(article of p)   (0 if own = 0)

4. **Dense ranking and fusion** (`_retrieve`): cosine of the question's embedding with
   every passage's; the two rankings are fused by reciprocal rank fusion::

       fused(p) = 1 / (RRF_K + rank_bm25(p)) + 1 / (RRF_K + rank_dense(p)),  RRF_K = 10

   (a passage with BM25 score 0 gets no lexical term). On the tuning set, top-article
   accuracy is BM25 0.91, dense 0.81, fused 0.91; on the held-out set 0.85, 0.78 and 0.85
   (tests/core/test_kb_eval.py prints it).
5. **Confidence**: the probability that the top passage's article answers the question,
   from a logistic model over five features of the top passage (`CONFIDENCE_WEIGHTS`)::

       coverage   idf-weighted share of the message's terms found in the passage (1) or
                  elsewhere in its article (0.5), typo-corrected matches at half, unknown
                  words at the maximum idf, general-English words at most 0.5
       cosine     dense cosine of the passage
       unit       best dense cosine of a unit of that article
       margin     (s1 - s2) / s1 * coverage, s1 its BM25, s2 the best other article's
       agree      coverage if BM25's and the dense ranking's top articles are this one

   Fitted (regularised logistic regression) on the tuning set and the three older
   question sets; the bias was then set on the tuning set alone so that 90% of its
   out-of-scope questions fall below 0.5. tests/data/kb_heldout.jsonl only checks it.

   Two cut-offs. Below `answer_floor` (default 0.3) the provider says it could not find
   the answer, offers a person and emits an escalation action (reason "low_confidence");
   it states no KB facts then. Between the floor and `threshold` (the agent's
   `confidence_threshold`, default 0.5) it gives the closest article's answer *hedged*
   with its citation, and still offers a person. At or above `threshold` it answers.
6. **Answer** (`_answer_passages`, `_compose`): within the top article, the passage holding
   the best unit for the question's intent - a price for "how much", days and times for
   "when", a step for "how do I" / an imperative, a number for "how long" - scored by
   matched clauses, dense cosine and the heading; a special case ("If your organization
   uses SSO, ...") counts less unless the question names it. Then its best units,
   verbatim and in document order: the steps following a "how do I" step, the sentence an
   "It ..." or "Then ..." leans on, a list with its lead-in, only the matching row of a
   table; led by a sentence acknowledging a matching context fact. A citation action
   names the article (one per article for a multi-part message; a part nothing answers
   is named and a person offered).

A request for a person ("talk to a human", "real person", ...) escalates at once (reason
"user_requested"); if the rest of the message is still a confident KB question it is
answered too. Confidence is then capped at `_USER_REQUEST_CAP`: the turn goes to a human.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import lru_cache

from core.events import ActionData
from core.knowledge import KnowledgeBase, current
from core.providers import kb_dense as kd
from core.providers import kb_text as kt
from core.providers.base import (
    Confidence,
    ContextEntry,
    GenerationRequest,
    ProviderAction,
    ProviderEvent,
    TextChunk,
    UsageReport,
    estimate_tokens,
)

K1 = 1.2
B = 0.75
_FIELD_WEIGHTS = {"heading": 2.0, "body": 1.0}
_TITLE_WEIGHT = 1.0  # the title is its own field, saturated separately from the text
_ARTICLE_WEIGHT = 1.0
_PAIR_WEIGHT = 1.0  # proximity: adjacent query terms adjacent in the passage
_W_TYPO, _W_SYNONYM, _W_CONTEXT, _W_NUMBER, _W_COMMON = 0.8, 0.4, 0.5, 0.3, 0.5
_USER_REQUEST_CAP = 0.3
DEFAULT_ANSWER_FLOOR = 0.3  # see "Two cut-offs" in the module docstring
_COMMON_IDF = 0.5  # coverage weight cap of a general-English word (known or not)
_MAX_INPUT_CHARS = 4000  # longer messages are truncated for retrieval: bounded CPU per turn
_MAX_UNITS = 3  # units picked by score from the top passage (before continuations)

_QUANTITY_QUESTION = re.compile(
    r"\bhow (?:long|much|many|often|soon|fast)\b|\bwhen\b|\bwhat time\b|\blimit|\bmax"
)
# "How / where do I ..." and troubleshooting ("why ... not working", "fix", "error") both
# want the actionable step.
_PROCEDURE_QUESTION = re.compile(
    r"\b(?:how|where|why)\b|\bcan (?:i|we)\b|\bsteps?\b|\bfix|\berror|\bbroken\b|"
    r"\b(?:not|n't|stopped) work|"
    # an imperative request: "reset my password", "export the events"
    r"^\W*(?:please\s+)?(?:reset|change|set ?up|add|remove|delete|cancel|connect|install|"
    r"export|invite|rotate|create|update|enable|disable|turn on|upgrade|downgrade)\b"
)
_NAVIGATION = re.compile(
    r"\w > \w|^(?:Go to|Open|Click|Choose|Select|Enter|Call|Add|Copy|Start)\b|\bclick\b|"
    r"^To (?:start|begin|get started|set up)\b"
)
# Intent cues: what kind of sentence answers the question.
_PRICE_QUESTION = re.compile(
    r"\bhow much\b|\bcost|\bprice|\bpricing|\bfees?\b|\bexpensive|\bcheap|\bper (?:month|year)"
)
_PRICE = re.compile(r"\$\d")
_WHEN_QUESTION = re.compile(
    r"\bwhen\b|\bwhat time\b|\bhours\b|\bopen\b|\bweekends?\b|\bholidays?\b|"
    r"\b(?:mon|tues|wednes|thurs|fri|satur|sun)days?\b|\bclos(?:e|ed|ing)\b"
)
_WHEN = re.compile(
    r"\b(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday|weekends?|holidays?)\b|"
    r"\b\d{1,2}:\d{2}\b"
)
# "If your organization uses SSO, ...", "On the Pro and Enterprise plans, ...": a special
# case. Unless the question names it, the general answer comes first.
_CONDITIONAL = re.compile(r"^(?:If|On the|For|When|Unless|Only|After)\b[^,:]{0,80}[,:]")
_SPECIAL_CASE_FACTOR = 0.7
_INTENT_BONUS = 1.5  # a unit of the kind the question asks for (price, time, step)
_DENSE_UNIT_WEIGHT = 3.0  # unit score: lexical clauses + this * cosine to the question
# A sentence that leans on the one before ("It ...", "Then ...") is not self-contained.
_DANGLING = re.compile(r"^(?:It|Its|It's|They|Them|This|These|That|Those|Then|There)\b")
# Where a message asks two things: "... ? ...", "... and also ...", "..., and how ...".
_PART_SPLIT = re.compile(
    r"\?+\s+(?=\S)|\s+and also\s+|\s*[,;]?\s+(?:and|also|plus)\s+(?=(?:how|what|whats|"
    r"what's|when|where|why|who|which|can|could|do|does|did|is|are|will|would|should)\b)",
    re.IGNORECASE,
)
_MIN_PART_WORDS = 1  # content words a part needs to be asked on its own
MAX_PARTS = 4  # a message of more parts is answered as one question
_RANK_STEP = 0.5  # passage choice: score lost per fused rank below the top passage
_META_SENTENCE = re.compile(r"^This (?:article|page|guide)\b")
_INTRO_FACTOR = 0.75  # an article's overview mentions everything; prefer specific sections
_MAX_WORDS = 80  # answer budget before the context acknowledgement

Clauses = tuple[dict[str, float], ...]


@dataclass(frozen=True, slots=True)
class _Passage:
    slug: str
    title: str
    url: str
    heading: str
    units: tuple[kt.Unit, ...]
    unit_terms: tuple[frozenset[str], ...]
    tf: dict[str, float]  # field-weighted term frequency (heading + body)
    length: float  # field-weighted length
    title_tf: Counter[str]
    terms: frozenset[str]
    pairs: frozenset[frozenset[str]]  # adjacent (unordered) term pairs: proximity
    text: str


@dataclass(frozen=True, slots=True)
class _Index:
    passages: tuple[_Passage, ...]
    idf: dict[str, float]
    avg_len: float
    title_avg_len: float
    doc_tf: dict[str, Counter[str]]  # article-level index, by slug
    doc_len: dict[str, int]
    doc_idf: dict[str, float]
    doc_avg_len: float
    article_terms: dict[str, frozenset[str]]
    typos: kt.TypoIndex  # surface vocabulary, for typo correction
    max_idf: float
    vectors: kd.Matrix  # one unit-length dense embedding per passage
    unit_vectors: kd.Matrix  # one per answerable unit (sentence, item), all passages
    unit_slugs: tuple[str, ...]  # the article of each row of `unit_vectors`
    unit_offsets: tuple[int, ...]  # first row of each passage's units in `unit_vectors`


def _idf(n_docs: int, df: int) -> float:
    # The "+1" BM25 variant: never negative, even for terms in every passage.
    return math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))


@lru_cache(maxsize=32)
def _build_index(kb: KnowledgeBase) -> _Index:
    """Build (once per KnowledgeBase: it is frozen and hashable) the passage index."""
    passages: list[_Passage] = []
    doc_tf: dict[str, Counter[str]] = {}
    vocab: set[str] = set()
    for doc in kb.documents:
        title_terms = kt.terms(doc.title)
        doc_counter: Counter[str] = Counter(kt.terms(doc.text)) + Counter(title_terms * 2)
        doc_tf[doc.slug] = doc_counter
        vocab.update(kt.words(doc.text))
        for section in kt.split_sections(doc.text):
            units = tuple(kt.split_units(section.body))
            sequences = [kt.terms(u.text) for u in units]
            unit_terms = tuple(frozenset(seq) for seq in sequences)
            fields = {
                "heading": kt.terms(section.heading),
                # "This article covers X, Y and Z" lists every topic: it helps match the
                # article (doc-level index) but would make the overview win every section.
                "body": [
                    t
                    for u, seq in zip(units, sequences, strict=True)
                    if not _META_SENTENCE.match(u.text)
                    for t in seq
                ],
            }
            tf: dict[str, float] = {}
            for name, field_terms in fields.items():
                for term in field_terms:
                    tf[term] = tf.get(term, 0.0) + _FIELD_WEIGHTS[name]
            length = sum(_FIELD_WEIGHTS[n] * len(t) for n, t in fields.items())
            pairs = {
                frozenset(pair)
                for seq in (title_terms, fields["heading"], *sequences)
                for pair in itertools.pairwise(seq)
                if pair[0] != pair[1]
            }
            passages.append(
                _Passage(
                    doc.slug,
                    doc.title,
                    doc.url,
                    section.heading,
                    units,
                    unit_terms,
                    tf,
                    length,
                    Counter(title_terms),
                    frozenset(tf) | set(title_terms),
                    frozenset(pairs),
                    section.body,
                )
            )
    df: Counter[str] = Counter(t for p in passages for t in p.terms)
    doc_df: Counter[str] = Counter(t for c in doc_tf.values() for t in c)
    n, n_docs = len(passages), len(doc_tf)
    return _Index(
        passages=tuple(passages),
        idf={t: _idf(n, c) for t, c in df.items()},
        avg_len=sum(p.length for p in passages) / n if n else 1.0,
        title_avg_len=sum(p.title_tf.total() for p in passages) / n if n else 1.0,
        doc_tf=doc_tf,
        doc_len={slug: sum(c.values()) for slug, c in doc_tf.items()},
        doc_idf={t: _idf(n_docs, c) for t, c in doc_df.items()},
        doc_avg_len=sum(sum(c.values()) for c in doc_tf.values()) / n_docs if n_docs else 1.0,
        article_terms={slug: frozenset(c) for slug, c in doc_tf.items()},
        typos=kt.TypoIndex(vocab),
        max_idf=_idf(n, 0),
        vectors=kd.encoder().encode([_dense_text(p) for p in passages]),
        unit_vectors=kd.encoder().encode(
            [f"{p.heading}. {u.text}" for p in passages for u in p.units]
        ),
        unit_slugs=tuple(p.slug for p in passages for _ in p.units),
        unit_offsets=tuple(itertools.accumulate((len(p.units) for p in passages), initial=0))[:-1]
        if passages
        else (),
    )


def _dense_text(passage: _Passage) -> str:
    return f"{passage.title}. {passage.heading}. " + " ".join(
        u.text for u in passage.units if not _META_SENTENCE.match(u.text)
    )


def _bm25(
    clauses: Clauses,
    tf: dict[str, float] | Counter[str],
    length: float,
    avg_len: float,
    idf: dict[str, float],
) -> float:
    """Okapi BM25 where each query clause (a term and its synonyms) contributes its best
    alternative only, so a word with many synonyms cannot outweigh one without."""
    norm = K1 * (1.0 - B + B * length / (avg_len or 1.0))
    score = 0.0
    for clause in clauses:
        best = 0.0
        for term, weight in clause.items():
            freq = tf.get(term, 0.0)
            if freq:
                best = max(best, weight * idf.get(term, 0.0) * freq * (K1 + 1.0) / (freq + norm))
        score += best
    return score


@dataclass(frozen=True, slots=True)
class _Query:
    clauses: Clauses  # one per message term: {term or typo fix: w, synonym: w, ...}
    pairs: tuple[frozenset[str], ...]  # adjacent message terms (as matched)
    core: dict[str, str | None]  # message stem -> stem matched on (typo fix) or None
    common: frozenset[str]  # message stems of frequent general-English words


def _build_query(message: str, index: _Index) -> _Query:
    clauses: list[dict[str, float]] = []
    core: dict[str, str | None] = {}
    common: set[str] = set()
    sequence: list[str] = []
    for word in kt.words(message, normalised=True)[:300]:
        term = kt.stem(word)
        if term in core:
            if core[term]:
                sequence.append(core[term] or term)
            continue
        match: str | None = term
        clause: dict[str, float] = {}
        if term in index.idf:
            # Numbers are weak evidence: "2 weeks ago" is not about "2 business days".
            clause[term] = (
                _W_NUMBER if term.isdigit() else _W_COMMON if term in kt.COMMON_STEMS else 1.0
            )
        else:
            fixed = index.typos.correct(word)
            match = kt.stem(fixed) if fixed else _stem_backoff(term, index)
            if match:
                clause[match] = _W_TYPO
        core[term] = match
        sequence.append(match or "")
        if term in kt.COMMON_STEMS:
            common.add(term)
        for synonym in kt.SYNONYMS.get(match or term, ()):
            clause.setdefault(synonym, _W_SYNONYM)
        if clause:
            clauses.append(clause)
    pairs = {frozenset((a, b)) for a, b in itertools.pairwise(sequence) if a and b and a != b}
    return _Query(tuple(clauses), tuple(sorted(pairs, key=sorted)), core, frozenset(common))


def _stem_backoff(term: str, index: _Index) -> str | None:
    """A known stem that extends or is extended by an unknown one: the stemmer is not
    always consistent ("recoverable" -> "recover", "recovered" -> "recov")."""
    if len(term) < 5:
        return None
    candidates = [
        known
        for known in index.idf
        if len(known) >= 5 and (known.startswith(term) or term.startswith(known))
    ]
    return min(candidates, key=lambda k: (abs(len(k) - len(term)), k)) if candidates else None


def _coverage(query: _Query, passage: _Passage, index: _Index) -> float:
    total = matched = 0.0
    article = index.article_terms.get(passage.slug, frozenset())
    for term, match in query.core.items():
        if match:
            idf = index.idf.get(match, index.max_idf)
        else:
            # Unknown words weigh most (off-topic signal), except numbers: order ids and
            # amounts are specifics a help center never contains.
            idf = 1.0 if term.isdigit() else index.max_idf
        if term in query.common:
            idf = min(idf, _COMMON_IDF)
        total += idf
        synonyms = kt.SYNONYMS.get(match or term, frozenset())
        # A typo correction is a guess ("story" -> "store"): it earns half the credit.
        guess = 0.5 if match and match != term else 1.0
        if match and match in passage.terms:
            matched += guess * idf
        elif (match and match in article) or synonyms & article:
            matched += 0.5 * guess * idf
    return matched / total if total else 0.0


def _cues(raw: str) -> tuple[bool, bool, bool, bool]:
    """(quantity, procedure, price, when) intent cues of the question's own words."""
    lowered = raw.lower()
    return (
        bool(_QUANTITY_QUESTION.search(lowered)),
        bool(_PROCEDURE_QUESTION.search(lowered)),
        bool(_PRICE_QUESTION.search(lowered)),
        bool(_WHEN_QUESTION.search(lowered)),
    )


def _unit_scores(
    passage: _Passage,
    clauses: Clauses,
    index: _Index,
    cues: tuple[bool, bool, bool, bool],
    cosines: tuple[float, ...] = (),
) -> list[float]:
    """Relevance of each unit: idf-weighted query clauses it matches, its dense similarity
    to the question, plus a bonus when it has the kind of answer the question asks for
    (`cues`: a number, a step, a price, a day or time)."""
    quantity, procedure, price, when = cues
    asked = {t for c in clauses for t, w in c.items() if w >= 1.0}
    scores: list[float] = []
    for k, (unit, unit_terms) in enumerate(zip(passage.units, passage.unit_terms, strict=True)):
        score = sum(
            max((w * index.idf.get(t, 0.0) for t, w in c.items() if t in unit_terms), default=0)
            for c in clauses
        )
        if cosines:
            score += _DENSE_UNIT_WEIGHT * max(0.0, cosines[k])
        if quantity and score and re.search(r"\d", unit.text):
            score += 1.0  # "how long / how many" questions want the sentence with a number
        if procedure and score and _NAVIGATION.search(unit.text):
            score += _INTENT_BONUS  # "how / where do I" questions want the step
        if price and score and _PRICE.search(unit.text):
            score += _INTENT_BONUS * 2  # "how much" wants the price itself
            if "price" in unit_terms:
                score += _INTENT_BONUS  # ... and a "Price" beats a fee that has one
        if when and score and _WHEN.search(unit.text):
            score += _INTENT_BONUS * 2  # "when are you open" wants the days and hours
        condition = _CONDITIONAL.match(unit.text)
        if condition and not set(kt.terms(condition.group(0))) & asked:
            score *= _SPECIAL_CASE_FACTOR  # a case the question did not mention
        if _META_SENTENCE.match(unit.text):
            score = 0.0  # "This article explains..." answers nothing
        scores.append(score)
    return scores


def _passage_cosines(found: _Found | None, index: _Index, passage: _Passage) -> tuple[float, ...]:
    if found is None:
        return ()
    i = index.passages.index(passage)
    start = index.unit_offsets[i]
    return found.unit_cosine[start : start + len(passage.units)]


def _answer_passages(
    found: _Found, clauses: Clauses, index: _Index, raw: str, limit: int
) -> list[_Passage]:
    """The passage to answer from: of the top article's passages among the best fused
    ranks, the one holding the best unit for this question's intent (an overview counts
    less: it names every topic and answers none); then a close runner-up of the same
    article, for a second part of the answer."""
    top_slug = index.passages[found.order[0]].slug
    cues = _cues(raw)
    candidates = [i for i in found.order[:8] if index.passages[i].slug == top_slug]
    best: list[tuple[float, int]] = []
    for rank, i in enumerate(candidates):
        passage = index.passages[i]
        cosines = _passage_cosines(found, index, passage)
        scores = _unit_scores(passage, clauses, index, cues, cosines)
        # A heading word counts half when the title has it too: the title's words are in
        # every section's context.
        heading = {t: 0.5 if t in passage.title_tf else 1.0 for t in kt.terms(passage.heading)}
        value = max(scores, default=0.0) * (_INTRO_FACTOR if not passage.heading else 1.0)
        value += sum(
            max((w * heading[t] * index.idf.get(t, 0.0) for t, w in c.items() if t in heading),
                default=0)
            for c in clauses
        )  # a section whose heading names the question's subject is about it
        best.append((value - _RANK_STEP * rank, i))
    best.sort(key=lambda item: (-item[0], item[1]))
    chosen = [index.passages[i] for _, i in best[:limit]]
    if len(best) > 1 and best[1][0] < 0.75 * best[0][0]:
        chosen = chosen[:1]
    return chosen


def _select_units(
    passage: _Passage, scores: list[float], limit: int, procedure: bool = False
) -> list[int]:
    """Indices of the passage's most relevant units, in document order: the best ones
    (within the word budget, best first), the sentences continuing the best one (for a
    "how do I" question the following steps of its paragraph, in order), the sentence a
    "It ..." or "Then ..." leans on, and the lead-in of a list or its items (exempt from
    the budget: a partial list misleads)."""
    if not scores or max(scores) <= 0:
        return []
    units = passage.units
    ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    best = ranked[0]
    picked: set[int] = set()
    words = 0
    continuation: list[int] = []
    for nxt in range(best + 1, min(len(units), best + (3 if procedure else 2))):
        if (
            units[nxt].paragraph != units[best].paragraph
            or units[nxt].kind == "row"
            or not (scores[nxt] or procedure)
        ):
            break
        continuation.append(nxt)
    # Table rows are alternatives ("Free: ...", "Pro: ..."): only the ones that match as
    # well as the best, not every row that mentions a price.
    near = [
        i
        for i in ranked[:limit]
        if scores[i] >= (1.0 if units[i].kind == "row" else 0.5) * scores[best]
    ]
    for i in near + continuation:
        size = len(units[i].text.split())
        if not picked or words + size <= _MAX_WORDS:
            picked.add(i)
            words += size
    for i in sorted(picked):
        if (
            _DANGLING.match(units[i].text)
            and i > 0
            and units[i - 1].paragraph == units[i].paragraph
        ):
            picked.add(i - 1)  # "Open it from ..." needs the sentence naming "it"
    for i in sorted(picked):
        if units[i].text.endswith(":"):  # "...choose a destination:" needs the list
            j = i + 1
            while j < len(units) and units[j].kind != "sentence" and j - i <= 6:
                picked.add(j)
                j += 1
        elif units[i].kind == "item":  # an item needs its "For a custom app, use:" lead-in
            j = i - 1
            while j >= 0 and units[j].kind == "item":
                j -= 1
            if j >= 0 and units[j].text.endswith(":"):
                picked.add(j)
    # Two or more items of one short list: give the whole list.
    run: list[int] = []
    for i in [*range(len(units)), len(units)]:
        if i < len(units) and units[i].kind == "item":
            run.append(i)
            continue
        if len(run) <= 6 and len(picked.intersection(run)) >= 2:
            picked.update(run)
        run = []
    return sorted(picked)


@dataclass(slots=True, eq=False)
class _Part:
    """One question of a message, and (once answered) its answer."""

    raw: str
    question: str  # normalised
    confidence: float = 0.0
    body: str = ""
    used: str = ""
    top: _Passage | None = None


def _split_parts(message: str) -> list[str]:
    """The questions of a message: one, or each part of "X? Y" / "X and also Y" when every
    part has enough words to be asked on its own."""
    pieces = [p.strip() for p in _PART_SPLIT.split(message) if p and p.strip()]
    if 1 < len(pieces) <= MAX_PARTS and all(len(kt.words(p)) >= _MIN_PART_WORDS for p in pieces):
        return pieces
    return [message]  # one question, or a long message read as a whole: bounded work


@dataclass(frozen=True, slots=True)
class _Reply:
    text: str
    confidence: float
    escalate: bool
    actions: tuple[ActionData, ...] = ()
    trailing: tuple[ActionData, ...] = ()
    prompt: str = ""


class KbProvider:
    """Answers from a knowledge base with no network: BM25 retrieval, extractive replies,
    citations, coverage-based confidence and escalation (see the module docstring)."""

    def __init__(
        self,
        kb: KnowledgeBase,
        *,
        threshold: float = 0.5,
        answer_floor: float = DEFAULT_ANSWER_FLOOR,
        max_passages: int = 2,
        word_delay_s: float = 0.0,
    ) -> None:
        self._kb = kb
        self._threshold = threshold
        self._floor = min(answer_floor, threshold)
        self._max_passages = max(1, max_passages)
        self._word_delay_s = word_delay_s

    @property
    def model_name(self) -> str:
        return "kb"

    async def generate(self, request: GenerationRequest) -> AsyncIterator[ProviderEvent]:
        """Stream the reply word by word, then actions, confidence and usage."""
        reply = self.answer(request.last_user_message, request.context)
        for action in reply.actions:
            yield ProviderAction(action)
        for i, piece in enumerate(kt.stream_pieces(reply.text)):
            if i and self._word_delay_s > 0:
                await asyncio.sleep(self._word_delay_s)
            yield TextChunk(piece)
        for action in reply.trailing:
            yield ProviderAction(action)
        yield Confidence(reply.confidence, reply.escalate)
        yield UsageReport(estimate_tokens(reply.prompt), estimate_tokens(reply.text), "kb")

    def answer(self, message: str, context: dict[str, ContextEntry] | None = None) -> _Reply:
        """Compose the whole reply synchronously (retrieval is CPU-only and bounded)."""
        message = (message or "")[:_MAX_INPUT_CHARS]
        self._kb = current(self._kb)  # picks up edited articles (checked once a second)
        index = _build_index(self._kb)
        if not message.strip():
            return _Reply("Hi! What can I help you with today?", 0.0, False)
        normal = kt.normalise(message)  # once: the phrase table is the costly part
        human = kt.HUMAN_REQUEST.search(normal)
        if human is None and kt.is_small_talk(message):
            return _Reply(
                "You're welcome! Is there anything else I can help you with?"
                if re.search(r"\bthank|\bthx|\bcheers", message, re.I)
                else "Hi! What can I help you with today?",
                1.0,
                False,
            )
        # A request for a person is not part of the question: score the rest of it.
        question = normal
        if human:
            question = question[: human.start()] + " " + question[human.end() :]
        facts = kt.context_facts(context or {})
        if human:
            parts = [_Part(message, question)]
        else:
            pieces = _split_parts(message)
            parts = [_Part(r, kt.normalise(r) if len(pieces) > 1 else normal) for r in pieces]
        for part in parts:
            self._answer_part(part, index, facts)
        answered = [
            p for p in parts if p.top is not None and p.body and p.confidence >= self._floor
        ]
        if len(parts) > 1 and answered:
            return self._multi_part(parts, answered)
        first = parts[0]
        confidence, body, used, top = first.confidence, first.body, first.used, first.top

        if human:
            escalation = ActionData("escalation", {"reason": "user_requested"})
            text = "Of course, I'll connect you with a member of our support team."
            capped = min(confidence, _USER_REQUEST_CAP)
            if top is not None and body and confidence >= self._threshold:
                text += " In the meantime, here is what our help center says: " + body
                return _Reply(text, capped, True, (escalation,), (_citation(top),), message + used)
            return _Reply(text, capped, True, (escalation,), prompt=message)
        if top is None or not body or confidence < self._floor:
            escalation = ActionData(
                "escalation", {"reason": "low_confidence", "confidence": round(confidence, 3)}
            )
            text = (
                "I'm not sure about that, and I couldn't find it in our help center. "
                "Would you like me to connect you with a member of our support team?"
            )
            return _Reply(text, confidence, True, (escalation,), prompt=message)
        if confidence < self._threshold:
            # Between the floor and the threshold: say what the closest article says, say
            # we are not sure, and offer a person.
            escalation = ActionData(
                "escalation", {"reason": "low_confidence", "confidence": round(confidence, 3)}
            )
            text = (
                "I'm not completely sure this answers your question, but here is what our "
                f"help center says: {body} If that doesn't help, I can connect you with a "
                "member of our support team."
            )
            return _Reply(text, confidence, True, (escalation,), (_citation(top),),
                          message + used)
        return _Reply(body, confidence, False, (), (_citation(top),), message + used)

    def _answer_part(self, part: _Part, index: _Index, facts: list[kt.ContextFact]) -> None:
        """Retrieve and compose the answer to one question (fills `part` in)."""
        query = _build_query(part.question, index)
        relevant = [f for f in facts if f.terms & _expanded(query)]
        known = {t for clause in query.clauses for t in clause}
        context_terms = {t for f in relevant for t in f.terms} - known
        clauses = query.clauses + tuple({t: _W_CONTEXT} for t in sorted(context_terms))
        found = _retrieve(part.question, query, clauses, index)
        if found is None:
            return
        part.confidence = found.confidence
        passages = _answer_passages(found, clauses, index, part.raw, self._max_passages)
        part.top = passages[0]
        part.body = _compose(passages, clauses, index, part.raw, relevant, found)
        part.used = " ".join(p.text for p in passages)

    def _multi_part(self, parts: list[_Part], answered: list[_Part]) -> _Reply:
        """Each part answered in turn (one citation per article); a part nothing answers is
        named, and then a person is offered."""
        texts: list[str] = []
        citations: list[ActionData] = []
        seen: set[str] = set()
        for part in parts:
            if part in answered and part.top is not None:
                asked = part.raw.strip(" ?!.,").strip()
                if part.confidence < self._threshold:  # said, but hedged, like a single answer
                    texts.append(f'I\'m not completely sure about "{asked}", but our help '
                                 f"center says: {part.body}")
                elif part.body not in texts:
                    texts.append(part.body)
                if part.top.slug not in seen:
                    seen.add(part.top.slug)
                    citations.append(_citation(part.top))
            else:
                asked = part.raw.strip(" ?!.,").strip()
                texts.append(f'I couldn\'t find an answer to "{asked}" in our help center.')
        confidence = min(p.confidence for p in parts)
        escalate = confidence < self._threshold
        actions: tuple[ActionData, ...] = ()
        if escalate:
            actions = (
                ActionData(
                    "escalation", {"reason": "low_confidence", "confidence": round(confidence, 3)}
                ),
            )
            texts.append("I can connect you with a member of our support team for the rest.")
        prompt = " ".join(p.raw for p in parts) + " ".join(p.used for p in answered)
        return _Reply(" ".join(texts), confidence, escalate, actions, tuple(citations), prompt)


@dataclass(frozen=True, slots=True)
class _Found:
    order: tuple[int, ...]  # passage indices, best fused rank first
    bm25: tuple[float, ...]  # lexical score of every passage
    features: tuple[float, ...]  # the confidence model's inputs (see `_FEATURES`)
    confidence: float
    unit_cosine: tuple[float, ...]  # dense similarity of every unit to the question


_FEATURES = ("coverage", "cosine", "unit_cosine", "bm25_margin", "agree", "bias")
RRF_K = 10.0
W_BM25 = 1.0
W_DENSE = 1.0
CONFIDENCE_WEIGHTS = (2.37, 2.56, 1.91, 2.06, 2.43, -3.4)


def _retrieve(
    question: str, query: _Query, clauses: Clauses, index: _Index
) -> _Found | None:
    """Rank passages by reciprocal rank fusion of BM25 and dense cosine, and estimate the
    probability that the top passage's article answers the question."""
    n = len(index.passages)
    if not n or not query.core:
        return None
    bm25 = [0.0] * n
    for score, i in _rank(clauses, query.pairs, index):
        bm25[i] = score
    vector = kd.encoder().encode([question])[0]
    cosine = index.vectors @ vector
    lex_order = sorted(range(n), key=lambda i: (-bm25[i], i))
    dense_order = sorted(range(n), key=lambda i: (-float(cosine[i]), i))
    fused = [0.0] * n
    for rank, i in enumerate(lex_order):
        if bm25[i] > 0:
            fused[i] += W_BM25 / (RRF_K + rank + 1)
    for rank, i in enumerate(dense_order):
        fused[i] += W_DENSE / (RRF_K + rank + 1)
    order = tuple(sorted(range(n), key=lambda i: (-fused[i], i)))
    top = index.passages[order[0]]
    best_cos = float(cosine[order[0]])
    s1 = bm25[order[0]]
    s2 = max((bm25[i] for i in range(n) if index.passages[i].slug != top.slug), default=0.0)
    bm25_margin = (s1 - s2) / s1 if s1 > 0 else 0.0
    agree = float(
        index.passages[lex_order[0]].slug == top.slug == index.passages[dense_order[0]].slug
        and bm25[lex_order[0]] > 0
    )
    coverage = _coverage(query, top, index)
    unit_cos = index.unit_vectors @ vector
    best_unit = max(
        (float(c) for c, slug in zip(unit_cos, index.unit_slugs, strict=True) if slug == top.slug),
        default=0.0,
    )
    features = (
        coverage, best_cos, best_unit, bm25_margin * coverage, agree * coverage, 1.0
    )
    logit = sum(w * f for w, f in zip(CONFIDENCE_WEIGHTS, features, strict=True))
    confidence = 1.0 / (1.0 + math.exp(-logit))
    return _Found(
        order, tuple(bm25), features, confidence, tuple(float(c) for c in unit_cos)
    )


def _rank(
    clauses: Clauses, pairs: tuple[frozenset[str], ...], index: _Index
) -> list[tuple[float, int]]:
    """(score, passage index) of every passage, best first (see the module docstring)."""
    own: list[float] = []
    for passage in index.passages:
        score = _bm25(clauses, passage.tf, passage.length, index.avg_len, index.idf)
        score += _TITLE_WEIGHT * _bm25(
            clauses, passage.title_tf, passage.title_tf.total(), index.title_avg_len, index.idf
        )
        if score:
            score += _PAIR_WEIGHT * sum(
                min(index.idf.get(t, 0.0) for t in pair) for pair in pairs if pair in passage.pairs
            )
        if not passage.heading:
            score *= _INTRO_FACTOR
        own.append(score)
    article = {
        slug: _bm25(clauses, tf, index.doc_len[slug], index.doc_avg_len, index.doc_idf)
        for slug, tf in index.doc_tf.items()
    }
    ranked = [
        (score + _ARTICLE_WEIGHT * article[passage.slug] if score else 0.0, i)
        for i, (passage, score) in enumerate(zip(index.passages, own, strict=True))
    ]
    return sorted(ranked, reverse=True)


def _compose(
    passages: list[_Passage],
    clauses: Clauses,
    index: _Index,
    message: str,
    relevant: list[kt.ContextFact],
    found: _Found | None = None,
) -> str:
    """The reply: a context acknowledgement (if a fact matches the article), the top
    passage's best units, and the best unit of a close runner-up from the same article."""
    top = passages[0]
    cues = _cues(message)
    parts: list[str] = []
    article_terms = index.article_terms.get(top.slug, frozenset())
    for fact in relevant:
        # Lead with the context fact only when the article talks about its values.
        if len(fact.terms & article_terms) >= 2:
            parts.append(kt.describe_fact(fact, article_terms))
            break
    scores = _unit_scores(top, clauses, index, cues, _passage_cosines(found, index, top))
    parts += [top.units[i].text for i in _select_units(top, scores, _MAX_UNITS, cues[1])]
    best = max(scores, default=0.0)
    covered = {t for part in parts for t in kt.terms(part)}
    for runner in passages[1:]:
        runner_scores = _unit_scores(
            runner, clauses, index, cues, _passage_cosines(found, index, runner)
        )
        i = max(range(len(runner_scores)), key=runner_scores.__getitem__, default=-1)
        # Only if it is as relevant as the best unit and answers a part of the question
        # the chosen units leave open (marginal relevance).
        new = (
            [
                c
                for c in clauses
                if max(c.values()) >= 1.0 and not set(c) & covered and set(c) & runner.unit_terms[i]
            ]
            if i >= 0
            else []
        )
        text = runner.units[i].text if i >= 0 else ""
        whole = not text.endswith(":") and not _DANGLING.match(text)
        if new and runner_scores[i] >= best and whole:
            parts.append(text)
    return " ".join(parts).strip()


def _expanded(query: _Query) -> set[str]:
    out = {m for m in query.core.values() if m} | set(query.core)
    for term in list(out):
        out |= kt.SYNONYMS.get(term, frozenset())
    return out


def _citation(passage: _Passage) -> ActionData:
    return ActionData(
        "citation", {"title": passage.title, "slug": passage.slug, "url": passage.url}
    )


def _clamp(value: float) -> float:
    return max(0.0, min(1.0, value))
