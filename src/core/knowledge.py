"""Knowledge bases: folders of Markdown articles an agent answers from."""

from __future__ import annotations

import re
from dataclasses import dataclass
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

    def get(self, slug: str) -> Document | None:
        for doc in self.documents:
            if doc.slug == slug:
                return doc
        return None


def _load(root: Path, base_url: str) -> KnowledgeBase:
    docs = []
    for path in sorted(root.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        match = _TITLE.search(text)
        title = match.group(1) if match else path.stem.replace("-", " ").title()
        url = f"{base_url.rstrip('/')}/{path.stem}" if base_url else ""
        docs.append(Document(slug=path.stem, title=title, text=text, url=url))
    return KnowledgeBase(root=str(root), documents=tuple(docs))


@lru_cache(maxsize=64)
def _cached(root: str, base_url: str, mtime_key: tuple[float, ...]) -> KnowledgeBase:
    return _load(Path(root), base_url)


def load_knowledge_base(root: Path, base_url: str = "") -> KnowledgeBase:
    """Load (and cache, keyed on file mtimes) the Markdown articles under `root`."""
    root = root.resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"knowledge base folder not found: {root}")
    mtimes = tuple(p.stat().st_mtime for p in sorted(root.glob("*.md")))
    return _cached(str(root), base_url, mtimes)
