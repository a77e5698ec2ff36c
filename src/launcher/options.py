"""Options several commands share."""

from __future__ import annotations

import argparse

DATABASE_HELP = (
    "database: a SQLite file path or sqlite:///PATH (default .switchboard/switchboard.db, "
    "or $SWITCHBOARD_DATA_DIR/switchboard.db)"
)


def add_database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", help=DATABASE_HELP)
