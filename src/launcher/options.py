"""Options several commands share."""

from __future__ import annotations

import argparse

DATABASE_ENV = "SWITCHBOARD_DATABASE_URL"
DATABASE_HELP = (
    "database: a SQLite file path, sqlite:///PATH or postgresql://USER@HOST:PORT/DB "
    f"(default ${DATABASE_ENV}, else .switchboard/switchboard.db or "
    "$SWITCHBOARD_DATA_DIR/switchboard.db)"
)


def add_database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", help=DATABASE_HELP)
