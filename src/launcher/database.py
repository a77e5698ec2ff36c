"""Which database a store command works on, and the refusal to invent one.

`serve` creates its database on first start (that is how `make run` sets up the demo).
Every other command reads or changes an existing one: run outside the project folder
without `--database`, the default relative path would silently create an empty
database there and the command would report "not found" for everything. Instead it says
which file it looked for.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.config import default_data_dir
from core.store.factory import SQLITE_SCHEME, StoreURLError, sqlite_path, store_scheme


def missing_default_database(path: str, explicit: bool) -> str | None:
    """Why a store command must not run on `path` (None when it may): the default
    database (no --database given) does not exist. An explicit --database is created if
    new, so `--database /tmp/new.db` keeps working for setting up a fresh store."""
    if explicit or ":memory:" in path:
        return None
    try:
        if store_scheme(path) != SQLITE_SCHEME:
            return None  # a database server: nothing here would create it by accident
    except StoreURLError:
        return None  # the store factory says what is wrong with it
    path = sqlite_path(path)
    if Path(path).exists():
        return None
    where = Path(path).resolve()
    source = ("$SWITCHBOARD_DATA_DIR" if os.environ.get("SWITCHBOARD_DATA_DIR")
              else f"the default {default_data_dir() / 'switchboard.db'}, relative to the "
                   "current folder")
    return (f"error: no database at {where} ({source}).\n"
            "Run the command in the project folder after `make run` has created it, or "
            "pass --database PATH (or set SWITCHBOARD_DATA_DIR).")
