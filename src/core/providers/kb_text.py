"""Text processing for the offline `kb` provider: tokens, stems, synonyms, Markdown units.

Everything here is deterministic and pure Python so the default install stays light and
works without a network: `snowballstemmer` (pure Python, no dependencies) supplies the
English Snowball stemmer; the stop-word list, the synonym table and the Markdown splitter
are small and local.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import snowballstemmer  # type: ignore[import-untyped]
from rapidfuzz import process
from rapidfuzz.distance import OSA

from core.providers.base import ContextEntry

_STEMMER = snowballstemmer.stemmer("english")

# Words that carry no retrieval signal in support questions. A standard English list plus
# chat filler ("please", "thanks", "guys") and texting abbreviations ("u", "asap", "thru"),
# which would otherwise dilute coverage.
_STOP_WORDS_TEXT = """
    a about above after again against all am an and any are aren't as at be because been
    before being below between both but by can can't cannot could couldn't did didn't do
    does doesn't doing don't down during each few for from further had hadn't has hasn't
    have haven't having he he'd he'll he's her here here's hers herself him himself his how
    how's i i'd i'll i'm i've if in into is isn't it it's its itself let's me more most
    mustn't my myself no nor not of off on once only or other ought our ours ourselves out
    over own same shan't she she'd she'll she's should shouldn't so some such than that
    that's the their theirs them themselves then there there's these they they'd they'll
    they're they've this those through to too under until up very was wasn't we we'd we'll
    we're we've were weren't what what's when when's where where's which while who who's
    whom why why's with won't would wouldn't you you'd you'll you're you've your yours
    yourself yourselves also just will shall may might must im ive dont doesnt cant isnt
    wont whats hows theres youre
    please pls thanks thank thx hi hello hey guys ok okay yes yeah hmm anyone someone
    something anything thing things way get got getting go going want wanted need needs
    like would know tell say said us one really still now already ever even much many
    help acme's vs versus ago make makes made take takes took say says ask asked happen
    happens etc able possible kind sure
    u ur r ya pls plz thx ty asap btw fyi idk imo lol thru tho gonna wanna gotta kinda sorta
    yep nope hiya
"""
# Contractions are often typed without the apostrophe ("arent", "wasnt"): both forms.
STOP_WORDS: frozenset[str] = frozenset(
    w for word in _STOP_WORDS_TEXT.split() for w in (word, word.replace("'", ""))
)

# Frequent general-English words (not stop words): weak evidence either way, so they weigh
# half in retrieval and at most 0.5 in coverage - a help center's vocabulary is small,
# which makes such words look rare (high idf) there although they say little about the
# topic of a question. Verbs, adverbs, time words and generic nouns only (the second block
# is the usual "100 most frequent English verbs" list plus indefinite pronouns); concrete
# nouns stay out: an unknown topic noun ("recipe", "laptop") is the off-topic signal.
_COMMON_WORDS_TEXT = """
    new old good bad best better big small large little long short high low great right
    wrong same different early late last next first second few every own sure real whole
    never always often sometimes usually again back away around today tomorrow yesterday
    soon later ever anymore maybe probably actually currently
    use used using find found see saw seen show shows showing look looking looks seem
    work works working worked start started starting stop stopped try tried trying come
    came give gave given put keep kept let leave left mean means call called calling
    turn turned run running move moved send sent sending receive received receiving
    bring brought happen happened provide provided include includes included continue
    allow allowed add added spend spent open opened offer offered remember consider
    appear appeared wait waiting expect expected require required report reported decide
    pull pulled push pushed fix fixed solve check checked change changed set write
    written read learn understand explain explained believe feel think thought hope
    people person someone time times day days week weeks month months year years minute
    minutes hour hours thing things stuff way ways part lot lots number numbers kind type
    place reason question problem issue idea example case point
    think tell need feel become put let begin seem talk hear play live believe hold sit
    stand lose meet lead watch follow create speak grow walk win love buy serve die build
    stay fall cut reach kill remain suggest raise pass sell
    everyone everybody everything nobody nothing somebody somewhere anywhere everywhere
    bunch couple night tonight morning evening
"""
COMMON_WORDS: frozenset[str] = frozenset(_COMMON_WORDS_TEXT.split())
COMMON_STEMS: frozenset[str] = frozenset(_STEMMER.stemWords(_COMMON_WORDS_TEXT.split()))

# Multi-word expressions folded into one token before tokenising (applied to documents and
# queries alike), so "log in", "log-in" and "login" meet, and so do "not working" and
# "broken".
_PHRASES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        # "How much does the Pro plan cost?" asks for a price: "cost" frames the question
        # (and would match "campaign costs" elsewhere); the topic is between the words.
        (r"\b(?:how much|what) (?:does|do|did|will|would|is|are)\b(.{0,60}?)\bcosts?\b",
         r" price \1 "),
        (r"\bhow much (?:is|are|for|would|will)\b", " price "),
        (r"\b(?:logs?|logg(?:ed|ing)) ?-?(?:in|on)\b", " login "),
        (r"\bsign(?:s|ed|ing)? ?-?in\b", " signin "),
        (r"\bsign(?:ed|ing)? ?-?up\b", " signup "),
        (r"\bsign(?:ed|ing)? ?-?on\b", " signon "),
        (r"\bset ?-?up\b", " setup "),
        # "how long / how much / how many" are interrogatives, not topics.
        (r"\bhow (?:long|much|many|often|frequently|soon|fast|quickly)\b", " "),
        (r"\be-?mail", " email"),
        (r"\bcredit cards?\b", " card "),
        (
            r"\b(?:not|isn't|isnt|aren't|doesn't|doesnt|don't|won't|stopped|stop) "
            r"(?:working|work|works)\b",
            " broken ",
        ),
        # Everyday names for what help centers call otherwise.
        (r"\b(?:fourth|4th) of july\b|\bjuly (?:4th|4|fourth)\b", " independence day "),
        (r"\bx-?mas\b", " christmas "),
        (r"\bhelp ?-?desk\b", " helpdesk "),
        (r"\b(?:airplane|flight|aeroplane) mode\b|\bno (?:signal|reception|connection)\b",
         " offline "),
        (r"\btoo many (?:calls|requests)\b", " rate limit "),
        (r"\bforget (?:them|me|us|him|her|the user|a user|everything)\b", " erase "),
        (r"\bread ?-?only\b|\bview ?-?only\b", " viewer "),
        (r"\bfoot ?-?traffic\b", " foottraffic "),
        (r"\bteam chat\b", " slack "),
        # Support shorthand.
        (r"\bidps?\b", " identity provider "),
        (r"\bcerts?\b", " certificate "),
        (r"\b(?:pw|pwd|passwd)\b", " password "),
        (r"\b(?:google )?sheets\b", " spreadsheet "),
        (r"\bfront ?-?end\b", " client-side "),
        (r"\bback ?-?end\b", " server "),
        (r"\bkicks? in\b", " take effect "),
        (r"\b(?:site|app|service|stuff|everything|acme|it|you) (?:is |are |goes |went )?down\b",
         " service incident "),
    )
)

# General support vocabulary: words in one group expand to each other at a reduced weight.
# Deliberately generic (billing, access, errors, people, time), not tuned to any article.
SYNONYM_GROUPS: tuple[tuple[str, ...], ...] = (
    ("cancel", "downgrade", "unsubscribe", "terminate"),
    ("bill", "billing", "invoice", "receipt", "charge", "statement"),
    ("payment", "pay", "charge", "card"),
    ("login", "signin", "logon", "password", "credentials", "locked"),
    ("price", "pricing", "cost", "expensive", "cheap", "fee"),
    ("delete", "remove", "erase", "purge", "wipe", "uninstall"),
    ("export", "download", "extract"),
    ("error", "fail", "failure", "broken", "problem", "issue", "wrong", "decline", "reject"),
    ("member", "user", "teammate", "coworker", "colleague", "seat", "employee", "staff"),
    ("invite", "onboard"),
    ("hours", "open", "available", "availability", "schedule"),
    ("contact", "reach", "email"),
    ("refund", "return"),
    ("ship", "shipping", "deliver", "delivery", "shipment", "arrive"),
    ("key", "token", "credential", "secret"),
    ("mobile", "phone", "iphone", "ipad", "ios", "android", "smartphone"),
    ("organization", "org", "company", "workspace", "tenant"),
    ("connect", "link", "integrate", "reconnect"),
    ("sync", "refresh", "import"),
    ("limit", "quota", "cap", "maximum", "max", "allowance"),
    ("retry", "resend", "redeliver"),
    ("plan", "tier", "subscription"),
    ("broken", "damaged", "defective", "faulty"),
    ("weekend", "saturday", "sunday"),
    ("holiday", "closed"),
    ("install", "setup", "configure"),
    ("role", "permission", "access", "rights", "privileges"),
    ("admin", "administrator"),
    ("slow", "delay", "late"),
    ("expire", "expired", "invalid", "outdated"),
    ("track", "record", "capture", "instrument"),
    ("change", "update", "modify", "edit", "switch"),
    ("forgot", "forget", "lost", "reset"),
    ("privacy", "gdpr", "ccpa", "pii"),
    ("alert", "notification", "notify", "ping"),
    ("csv", "spreadsheet", "excel"),
    ("website", "site", "web", "page"),
    ("order", "purchase", "buy", "bought"),
    ("automatic", "automated", "automatically", "scheduled", "recurring"),
    ("different", "distinct", "unique"),
    ("keep", "retain", "retention"),
    ("verify", "check", "validate", "confirm", "authenticate"),
    ("device", "hardware", "gadget"),
    ("sdk", "library", "package"),
    ("app", "application"),
    ("offline", "network", "internet", "wifi", "connectivity"),
    ("leak", "exposed", "compromised", "stolen"),
    ("revoke", "disable", "deactivate", "invalidate", "offboard", "deprovision"),
    ("support", "helpdesk", "staffed", "staffing", "humans", "duty"),
    ("night", "overnight", "evening"),
    ("rotate", "rotation", "swap"),
    ("azure", "microsoft", "entra"),
    ("foottraffic", "visitors", "visitor", "footfall"),
    ("advertising", "advert", "ad", "campaign", "marketing"),
)

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """The Snowball (Porter2) English stem of a lower-case word."""
    result: str = _STEMMER.stemWord(word)
    return result


def normalise(text: str) -> str:
    """Lower-case `text` and fold the multi-word expressions of `_PHRASES`."""
    text = text.lower().replace("\u2019", "'")
    for pattern, replacement in _PHRASES:
        text = pattern.sub(replacement, text)
    return text


def words(text: str, normalised: bool = False) -> list[str]:
    """Lower-case word tokens of `text` (already `normalise`d if `normalised`), stop words
    removed (not stemmed)."""
    out = []
    for raw in _WORD.findall(text if normalised else normalise(text)):
        word = raw[:-2] if raw.endswith("'s") else raw  # possessive: "google's" -> "google"
        if word not in STOP_WORDS and not (len(word) == 1 and word.isalpha()):
            out.append(word)
    return out


def terms(text: str) -> list[str]:
    """Stemmed index terms of `text` (stop words removed)."""
    return [stem(word) for word in words(text)]


def _build_synonyms() -> dict[str, frozenset[str]]:
    table: dict[str, set[str]] = {}
    for group in SYNONYM_GROUPS:
        stems = {stem(normalise(word).strip()) for word in group}
        for member in stems:
            table.setdefault(member, set()).update(stems - {member})
    return {key: frozenset(value) for key, value in table.items()}


SYNONYMS: dict[str, frozenset[str]] = _build_synonyms()


class TypoIndex:
    """Typo correction against a vocabulary, with `rapidfuzz` (C++, optimal string
    alignment distance: insert, delete, substitute, transpose) instead of a Python edit
    distance loop. Candidates are bucketed by first letter (people rarely mistype it), so
    one lookup scans a few hundred words in C. Conservative on purpose: only words of 5+
    letters, distance 1, or 2 for words of 8+ letters; ties go to the alphabetically first
    word, so corrections are deterministic."""

    def __init__(self, vocabulary: Iterable[str]) -> None:
        buckets: dict[str, list[str]] = {}
        for word in sorted(set(vocabulary)):
            if len(word) >= 4:
                buckets.setdefault(word[0], []).append(word)
        self._buckets = buckets

    @lru_cache(maxsize=4096)  # noqa: B019 - one index per knowledge base, kept with it
    def correct(self, word: str) -> str | None:
        """The closest vocabulary word to an unknown `word`, or None."""
        if len(word) < 5 or not word.isalpha():
            return None
        limit = 2 if len(word) >= 8 else 1
        candidates = self._buckets.get(word[0])
        if not candidates:
            return None
        found = process.extract(
            word, candidates, scorer=OSA.distance, score_cutoff=limit, limit=None
        )
        if not found:
            return None
        best: str = min(found, key=lambda hit: (hit[1], hit[0]))[0]
        return best


# --- Markdown -----------------------------------------------------------------------------

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(*`])")
_TABLE_RULE = re.compile(r"^\|?\s*:?-{2,}")
_LIST_ITEM = re.compile(r"^([-*+]|\d+\.)\s+")


@dataclass(frozen=True, slots=True)
class Unit:
    """One answerable piece of a section: `kind` is "sentence", "item" (a list item),
    "row" (a table row, read as a sentence) or "code" (an indented block, verbatim)."""

    text: str
    kind: str
    paragraph: int = 0


@dataclass(frozen=True, slots=True)
class Section:
    """One heading's worth of an article: `heading` is "" for the text before the first
    subheading (the article's introduction)."""

    heading: str
    body: str


def split_sections(markdown: str) -> list[Section]:
    """Split an article at `##`-and-deeper headings; the `#` title line is dropped."""
    sections: list[Section] = []
    heading = ""
    lines: list[str] = []
    for line in markdown.splitlines():
        match = _HEADING.match(line)
        if match:
            if lines and "".join(lines).strip():
                sections.append(Section(heading, "\n".join(lines).strip()))
            heading = "" if len(match.group(1)) == 1 else match.group(2)
            lines = []
        else:
            lines.append(line)
    if "".join(lines).strip():
        sections.append(Section(heading, "\n".join(lines).strip()))
    return sections


def clean_inline(text: str) -> str:
    """Plain text from inline Markdown: emphasis and code markers dropped, links kept as
    their text, whitespace collapsed."""
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)
    text = text.replace("**", "").replace("__", "").replace("`", "")
    return re.sub(r"\s+", " ", text).strip()


def _table_units(rows: list[str]) -> list[str]:
    cells = [[clean_inline(c) for c in row.strip().strip("|").split("|")] for row in rows]
    cells = [row for row, raw in zip(cells, rows, strict=True) if not _TABLE_RULE.match(raw)]
    if len(cells) < 2:
        return [" ".join(" ".join(row) for row in cells)]
    header, *body = cells
    units = []
    for row in body:
        # "Pro: Price $79/month; Projects 10" - each row read as a sentence.
        pairs = [f"{h} {v}" for h, v in zip(header[1:], row[1:], strict=False) if v]
        units.append(f"{row[0]}: {'; '.join(pairs)}.")
    return units


def split_sentences(text: str) -> list[str]:
    """Sentences of a paragraph; never splits inside a double-quoted passage."""
    out: list[str] = []
    for piece in _SENTENCE_END.split(text):
        if out and out[-1].count('"') % 2:
            out[-1] += " " + piece  # the previous split fell inside a quotation
        elif piece:
            out.append(piece)
    return out


def split_units(body: str) -> list[Unit]:
    """Answerable units of a section body, in order: sentences of paragraphs, list items,
    table rows (as sentences) and indented code blocks (verbatim, one unit each)."""
    units: list[Unit] = []
    paragraph: list[str] = []
    code: list[str] = []
    table: list[str] = []
    item = False
    block = 0

    def flush() -> None:
        nonlocal item, block
        if paragraph:
            kind = "item" if item else "sentence"
            text = clean_inline(" ".join(paragraph))
            if item and not text.endswith((".", "!", "?", ":", ";")):
                text += "."  # list items read as sentences once joined into a reply
            units.extend(Unit(s, kind, block) for s in split_sentences(text))
            paragraph.clear()
        if code:
            units.append(Unit("\n".join(code), "code", block))
            code.clear()
        if table:
            units.extend(Unit(row, "row", block) for row in _table_units(table))
            table.clear()
        item = False
        block += 1

    for line in body.splitlines():
        stripped = line.strip()
        if line.startswith(("    ", "\t")) and stripped and not paragraph:
            code.append(stripped)
        elif stripped.startswith("|"):
            if not table:
                flush()
            table.append(stripped)
        elif _LIST_ITEM.match(stripped):
            flush()
            item = True
            paragraph.append(_LIST_ITEM.sub("", stripped))
        elif not stripped:
            flush()
        else:
            if code or table:
                flush()
            paragraph.append(stripped)
    flush()
    return units


# --- Request context -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContextFact:
    """One object (or scalar) from a context entry: `subject` names it ("google_ads")."""

    label: str
    subject: str
    fields: tuple[tuple[str, Any], ...]
    terms: frozenset[str]
    nested: bool  # an object inside the entry's value (then `subject` is its key)


def context_facts(context: dict[str, ContextEntry]) -> list[ContextFact]:
    """Flatten context entries into facts: every nested object with scalar fields becomes
    one fact; its terms are the entry key and label, the path and the scalar values."""
    facts: list[ContextFact] = []

    def walk(key: str, entry: ContextEntry, path: tuple[str, ...], value: Any) -> None:
        if len(facts) >= 200:  # huge context values: bounded work
            return
        if isinstance(value, dict):
            scalars = tuple((str(k), v) for k, v in value.items() if not isinstance(v, dict | list))
            if scalars:
                text = " ".join([key, entry.label, *path, *(f"{k} {v}" for k, v in scalars)])
                subject = path[-1] if path else key
                facts.append(
                    ContextFact(
                        entry.label or key,
                        subject,
                        scalars,
                        frozenset(terms(text.replace("_", " "))),
                        bool(path),
                    )
                )
            for k, v in value.items():
                if isinstance(v, dict | list):
                    walk(key, entry, (*path, str(k)), v)
        elif isinstance(value, list):
            for i, item in enumerate(value[:50]):
                walk(key, entry, path if isinstance(item, dict) else (*path, str(i)), item)
        elif value is not None:
            walk(key, entry, path, {path[-1] if path else key: value})

    for key, entry in context.items():
        walk(key, entry, (), entry.value)
    return facts


def describe_fact(fact: ContextFact, article_terms: frozenset[str]) -> str:
    """A sentence acknowledging `fact`, naming only the fields the article talks about
    (all of them if none does), booleans rendered as yes/no."""

    def matches(value: Any) -> bool:
        return bool(set(terms(str(value))) & article_terms)

    fields = [(k, v) for k, v in fact.fields if not isinstance(v, bool) and matches(v)]
    fields = fields or list(fact.fields)
    parts = [
        f"{k.replace('_', ' ')}: {'yes' if v else 'no'}" if isinstance(v, bool) else f'{k} "{v}"'
        for k, v in fields[:4]
    ]
    listing = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    if fact.nested:
        return f"I can see in your {fact.label} that {fact.subject} has {listing}."
    return f"I can see in your {fact.label}: {listing}."


# --- Conversation cues ------------------------------------------------------------------

# A request for a person: a verb of contact followed closely by a human, or a bare "agent".
HUMAN_REQUEST = re.compile(
    r"\b(?:talk|speak|chat|connect|transfer|put|escalate|get|give|want|need|reach|contact)"
    r"\b[^.?!]{0,30}?\b(?:human|humans|real person|live person|actual person|a person|"
    r"agent|representative|rep|operator|real people|staff member|somebody real|"
    r"someone real)\b"
    r"|^\W*(?:a\s+)?(?:human|agent|representative|operator|real person|live agent)"
    r"(?:\s+please)?\W*$",
)
_GREETING_TEXT = (
    "hi hello hey hiya yo good morning afternoon evening there thanks thank you thx ok "
    "okay great cool bye goodbye cheers much"
)
_GREETING = frozenset(_GREETING_TEXT.split())


def is_small_talk(message: str) -> bool:
    """A short greeting or thanks with nothing to look up ("hi", "thanks a lot!")."""
    tokens = re.findall(r"[a-z']+", message.lower())
    return bool(tokens) and len(tokens) <= 6 and all(t in _GREETING for t in tokens)


def stream_pieces(text: str) -> list[str]:
    """Stream pieces: each word with its leading whitespace; they concatenate to `text`."""
    return re.findall(r"\s*\S+", text)
