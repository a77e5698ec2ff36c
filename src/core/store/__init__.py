"""Durable state behind one contract (`Store`); SQLite is the embedded default."""

from core.store.base import Store, TurnCommit
from core.store.sqlite import SqliteStore

__all__ = ["SqliteStore", "Store", "TurnCommit"]
