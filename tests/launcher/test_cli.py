"""The `switchboard` command, run as a user would (a subprocess on a temp database)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.demo.seed import demo_dir


def run(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "launcher.cli", *args, "--database", str(db)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "SWITCHBOARD_LOG_LEVEL": "WARNING"},
    )


def test_keys_create_prints_a_new_key_once(tmp_path: Path) -> None:
    result = run("keys", "create", "--org", "acme", "--kind", "secret", db=tmp_path / "sb.db")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("created secret key") and lines[1].startswith("sk_live_")


def test_agents_apply_reports_errors_by_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: ''\nprovider: {kind: gpt}\n")
    result = run("agents", "apply", str(bad), "--check", db=tmp_path / "sb.db")
    assert result.returncode == 2
    assert "name" in result.stderr and "provider.kind" in result.stderr


@pytest.mark.parametrize("name", ["support-agent.yaml", "sales-bot.yaml"])
def test_demo_agent_files_apply(tmp_path: Path, name: str) -> None:
    db = tmp_path / "sb.db"
    assert run("keys", "create", "--org", "demo", db=db).returncode == 0
    result = run("agents", "apply", str(demo_dir() / "agents" / name), "--org", "demo", db=db)
    assert result.returncode == 0, result.stderr
    assert "applied agent" in result.stdout


def test_usage_shows_a_table(tmp_path: Path) -> None:
    db = tmp_path / "sb.db"
    assert run("keys", "create", "--org", "demo", db=db).returncode == 0
    result = run("usage", "--org", "demo", db=db)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split()[:2] == ["day", "model"]
    assert "total" in result.stdout


def test_org_set_changes_limits_and_hides_the_secret(tmp_path: Path) -> None:
    db = tmp_path / "sb.db"
    assert run("keys", "create", "--org", "acme", db=db).returncode == 0
    secret_file = tmp_path / "identity-secret"
    secret_file.write_text("s3cret-s3cret-s3cret-s3cret-s3cret\n")
    result = run("org", "set", "--org", "acme", "--rps", "2.5", "--burst", "5",
                 "--daily-budget-micros", "1000", "--allowed-origins", "https://a.example,",
                 "--identity-secret-file", str(secret_file), db=db)
    assert result.returncode == 0, result.stderr
    import json

    shown = json.loads(run("org", "show", "--org", "acme", db=db).stdout)
    assert shown["rate_limit"] == {"rps": 2.5, "burst": 5}
    assert shown["budget"] == {"daily_micros": 1000}
    assert shown["allowed_origins"] == ["https://a.example"]
    assert shown["identity_secret"] == "(set)"
    assert "s3cret" not in result.stdout
    bad = run("org", "set", "--org", "acme", "--burst", "-1", db=db)
    assert bad.returncode == 2 and "--burst" in bad.stderr
