"""The benchmark harness at a toy size, so it cannot rot. Structure only: no test here
asserts on speed.

- the shipped ghz configs drive a real core through the built-in load tool;
- `python -m bench.run --tiny` prints and writes every row of the table.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import Harness

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ is a checkout folder, not an installed package
    sys.path.insert(0, str(ROOT))

from bench import loadtool  # noqa: E402
from bench.server import AGENTS_DIR  # noqa: E402

GHZ_DIR = ROOT / "bench" / "ghz"
GHZ_CONFIGS = ("chat.json", "stream_chat.json", "converse.json")
# ghz's documented configuration keys (runner.Config json tags) that our files use.
GHZ_KEYS = {"name", "host", "insecure", "protoset", "proto", "call", "total", "concurrency",
            "connections", "timeout", "duration", "data", "metadata"}
ROW_KEYS = ["1", "1b", "2", "3", "4a", "4b", "4c", "5", "6", "7a", "7b", "8a", "8b"]
# PostgreSQL + Redis and --workers 2: measured when both answer, else "skipped (why)".
SCALE_OUT_KEYS = {"7a", "7b", "8a", "8b"}


@pytest.mark.parametrize("name", GHZ_CONFIGS)
def test_ghz_config_is_ghz_shaped(name: str) -> None:
    raw = json.loads((GHZ_DIR / name).read_text())
    assert set(raw) <= GHZ_KEYS
    assert raw["insecure"] is True
    assert raw["protoset"] == "bench/ghz/switchboard.protoset"
    assert raw["metadata"]["authorization"].startswith("Bearer ")
    method = loadtool.resolve(raw["call"], str(ROOT / raw["protoset"]))
    assert method.path.startswith("/switchboard.v1.ChatService/")


def test_durations_follow_go_syntax() -> None:
    assert loadtool.parse_duration("10s") == 10.0
    assert loadtool.parse_duration("1m30s") == 90.0
    assert loadtool.parse_duration("250ms") == 0.25
    assert loadtool.parse_duration(3) == 3.0
    with pytest.raises(ValueError):
        loadtool.parse_duration("ten seconds")


def test_cli_flags_override_the_config_file() -> None:
    ns = loadtool.build_parser().parse_args(
        ["--config", str(GHZ_DIR / "chat.json"), "-n", "10", "-c", "2", "-z", "2s",
         "10.0.0.1:9000"])
    config = loadtool.config_from_args(ns)
    assert (config.host, config.total, config.concurrency, config.duration) == (
        "10.0.0.1:9000", 10, 2, 2.0)
    assert Path(config.protoset).exists()


@pytest.mark.parametrize("name", GHZ_CONFIGS)
async def test_ghz_configs_drive_the_core(sb: Harness, name: str) -> None:
    for path in sorted(AGENTS_DIR.glob("*.yaml")):
        await sb.apply_agent(path.read_text())
    config = loadtool.with_overrides(
        loadtool.load_config(GHZ_DIR / name), host=sb.grpc_target, total=3, concurrency=3)
    report = await loadtool.run(config)
    assert dict(report.statuses) == {"OK": 3}, report.errors
    assert len(report.latencies) == 3 and report.messages >= 3
    summary = report.summary()
    for part in ("Count:\t3", "Requests/sec:", "Latency distribution:", "99 % in",
                 "Status code distribution:", "[OK]\t3 responses"):
        assert part in summary


def test_make_bench_prints_every_row(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--tiny", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=100, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("Python ") and "grpcio" in line and "cores" in line
               for line in lines)
    printed = [line.split()[0] for line in lines if line.split() and line.split()[0] in ROW_KEYS]
    assert printed == ROW_KEYS
    result = json.loads(out.read_text())
    assert [row["key"] for row in result["rows"]] == ROW_KEYS
    scale_out = [row for row in result["rows"] if row["key"] in SCALE_OUT_KEYS]
    skipped = [row for row in scale_out if row["value"].startswith("skipped (")]
    assert skipped in ([], scale_out), scale_out  # all four measured, or all four skipped
    for row in result["rows"]:
        if row in skipped:
            assert row["ratio"] is None
            continue
        assert row["ratio"] is not None, row  # every row measured against its baseline
        assert not row["value"].startswith("n/a"), row
    assert {"python", "grpcio", "aiohttp", "protobuf", "cores"} <= set(result["environment"])
