"""Knowledge bases: folders of Markdown articles an agent answers from."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

_TITLE = re.compile(r"^#\s+(.+?)\s*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Document:
    """One article. `slug` is the file name without `.md` and is the citation id."""

    slug: str
    title: str
    text: str
    url: str = ""


@dataclass(frozen=True, slots=True)
class KnowledgeBase:
    root: str
    documents: tuple[Document, ...]
    base_url: str = ""
    # What the files looked like when loaded (name, mtime, size): the reload check.
    signature: tuple[tuple[str, int, int], ...] = field(default=(), compare=False)

    def get(self, slug: str) -> Document | None:
        for doc in self.documents:
            if doc.slug == slug:
                return doc
        return None


Signature = tuple[tuple[str, int, int], ...]


def _load(root: Path, base_url: str, signature: Signature = ()) -> KnowledgeBase:
    docs = []
    for path in sorted(root.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        match = _TITLE.search(text)
        title = match.group(1) if match else path.stem.replace("-", " ").title()
        url = f"{base_url.rstrip('/')}/{path.stem}" if base_url else ""
        docs.append(Document(slug=path.stem, title=title, text=text, url=url))
    return KnowledgeBase(str(root), tuple(docs), base_url, signature)


@lru_cache(maxsize=64)
def _cached(root: str, base_url: str, signature: Signature) -> KnowledgeBase:
    return _load(Path(root), base_url, signature)


def _signature(root: Path) -> Signature:
    out = []
    for path in sorted(root.glob("*.md")):
        stat = path.stat()
        out.append((path.name, stat.st_mtime_ns, stat.st_size))
    return tuple(out)


def load_knowledge_base(root: Path, base_url: str = "") -> KnowledgeBase:
    """Load (and cache, keyed on file mtimes) the Markdown articles under `root`."""
    root = root.resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"knowledge base folder not found: {root}")
    return _cached(str(root), base_url, _signature(root))


RECHECK_INTERVAL_S = 1.0  # how often `current` looks at the files (one stat per article)
_checked: dict[str, float] = {}
_check_lock = threading.Lock()


def current(kb: KnowledgeBase) -> KnowledgeBase:
    """`kb`, or a reload of it if a file under its folder was added, removed or changed
    (compared by name, modification time and size, at most once per `RECHECK_INTERVAL_S`
    per folder): edits are picked up without a restart. A folder that has gone away keeps
    the last good copy."""
    if not kb.signature:
        return kb  # built in memory, not from a folder
    now = time.monotonic()
    with _check_lock:
        if now - _checked.get(kb.root, -RECHECK_INTERVAL_S) < RECHECK_INTERVAL_S:
            return kb
        _checked[kb.root] = now
    root = Path(kb.root)
    try:
        signature = _signature(root)
    except OSError:
        return kb
    if signature == kb.signature or not root.is_dir():
        return kb
    return _cached(kb.root, kb.base_url, signature)
