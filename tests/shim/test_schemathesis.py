"""schemathesis fuzzes every documented route of the running shim with each kind of
credential (the widget key, the secret key, a flow session token) and fails on any 5xx
or any response that does not match the OpenAPI document.

Bounded: each run has a time budget (`RUN_BUDGET_S`), so the three stay well under two
minutes. The org's rate limits are raised so the fuzzer reaches the handlers instead of
the 429 in front of them.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from harness import SECRET, WIDGET, Harness

RUN_BUDGET_S = 25
MAX_EXAMPLES = 10
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,response_headers_conformance")
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


async def session_token(sb: Harness) -> str:
    async with sb.http.post("/api/public/v1/chat/sessions",
                            headers={"Authorization": f"Bearer {WIDGET}"}) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["token"])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("credential", ["widget", "secret", "session"])
async def test_schemathesis_finds_no_server_error_or_schema_mismatch(
        sb: Harness, tmp_path: Path, credential: str) -> None:
    if not SCHEMATHESIS.exists():
        pytest.fail("schemathesis is not installed (make setup installs the dev extra)")
    org = await sb.core.store.get_org(sb.org_id)
    assert org is not None
    extra = {**org.settings.extra,
             "rate_limit": {"rps": 1e6, "burst": 1_000_000, "max_streams": 10_000}}
    await sb.core.store.update_org_settings(sb.org_id, replace(org.settings, extra=extra))
    key = {"widget": WIDGET, "secret": SECRET}.get(credential) or await session_token(sb)
    proc = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS), "run", f"{sb.base_url}/openapi.json",
        "--header", f"Authorization: Bearer {key}",
        "--checks", CHECKS, "--phases", "coverage,fuzzing",
        "--max-examples", str(MAX_EXAMPLES), "--max-time", str(RUN_BUDGET_S),
        "--seed", "12", "--no-color", "--warnings", "off",
        "--request-timeout", "10",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=RUN_BUDGET_S + 60)
    report = out.decode(errors="replace")
    assert proc.returncode == 0, report[-6000:]
