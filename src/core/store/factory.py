"""The one place a `Store` is built: the backend is chosen by the database URL.

`--database PATH` and `--database sqlite:///PATH` open the embedded SQLite store;
`postgresql://...` is reserved for the PostgreSQL store (not yet available). The server
and every CLI command get their store here, so a new backend is one branch below.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from core.store.base import Store
from core.store.sqlite import SqliteStore

SQLITE_SCHEME = "sqlite"
POSTGRES_SCHEMES = frozenset({"postgres", "postgresql"})


class StoreURLError(ValueError):
    """The database URL names no backend this build can open."""


def sqlite_path(url: str) -> str:
    """The file a SQLite URL (or a bare path) names; `sqlite:///:memory:` stays in memory."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.netloc:
        raise StoreURLError(
            f"sqlite URL {url!r} has a host; use sqlite:///relative/path or "
            "sqlite:////absolute/path"
        )
    path = unquote(parts.path)
    # sqlite:///x.db is the relative path x.db, sqlite:////tmp/x.db the absolute /tmp/x.db.
    path = path[1:] if path.startswith("/") else path
    if not path:
        raise StoreURLError(f"sqlite URL {url!r} names no file")
    return path


def store_scheme(url: str) -> str:
    if not url.strip():
        raise StoreURLError("the database URL is empty")
    if "://" not in url:
        return SQLITE_SCHEME
    return urlsplit(url).scheme.lower()


def open_store(url: str) -> Store:
    """A (not yet opened) store for `url`; StoreURLError for anything it cannot open."""
    scheme = store_scheme(url)
    if scheme == SQLITE_SCHEME:
        return SqliteStore(sqlite_path(url))
    if scheme in POSTGRES_SCHEMES:
        raise StoreURLError(
            f"{scheme}:// databases are not supported yet; use a SQLite path or sqlite:///PATH"
        )
    raise StoreURLError(
        f"unknown database scheme {scheme!r}: use a file path or sqlite:///PATH"
    )


def describe(url: str) -> str:
    """The URL fit for a log line (a password in it is masked)."""
    parts = urlsplit(url) if "://" in url else None
    if parts is None or parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)
