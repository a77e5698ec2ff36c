"""`switchboard org set --add-origin/--remove-origin`: edit the allow-list without replacing it."""

from __future__ import annotations

import json
from pathlib import Path

from test_cli import run


def _origins(db: Path) -> list[str]:
    shown = json.loads(run("org", "show", "--org", "acme", db=db).stdout)
    origins: list[str] = shown["allowed_origins"]
    return origins


def test_add_keeps_the_list_and_remove_takes_one_out(tmp_path: Path) -> None:
    db = tmp_path / "sb.db"
    assert run("keys", "create", "--org", "acme", db=db).returncode == 0
    assert run("org", "set", "--org", "acme", "--allowed-origins", "http://localhost:*",
               db=db).returncode == 0
    result = run("org", "set", "--org", "acme", "--add-origin", "https://www.example.com/",
                 "--add-origin", "https://shop.example.com", db=db)
    assert result.returncode == 0, result.stderr
    assert _origins(db) == ["http://localhost:*", "https://www.example.com",
                            "https://shop.example.com"]
    # Adding twice keeps one entry.
    assert run("org", "set", "--org", "acme", "--add-origin", "https://WWW.example.com",
               db=db).returncode == 0
    assert len(_origins(db)) == 3
    result = run("org", "set", "--org", "acme", "--remove-origin", "http://localhost:*", db=db)
    assert result.returncode == 0, result.stderr
    assert _origins(db) == ["https://www.example.com", "https://shop.example.com"]


def test_bad_origins_and_emptying_the_list_are_refused(tmp_path: Path) -> None:
    db = tmp_path / "sb.db"
    assert run("keys", "create", "--org", "acme", db=db).returncode == 0
    assert run("org", "set", "--org", "acme", "--add-origin", "https://a.example",
               db=db).returncode == 0
    for bad in ("www.example.com", "https://a.example/page", "ftp://a.example"):
        result = run("org", "set", "--org", "acme", "--add-origin", bad, db=db)
        assert result.returncode == 2 and "not an origin" in result.stderr
    # An empty list means "any origin": removing the last one must not open the key.
    result = run("org", "set", "--org", "acme", "--remove-origin", "https://a.example", db=db)
    assert result.returncode == 2 and "any origin" in result.stderr
    assert _origins(db) == ["https://a.example"]
