"""The signature checks docs/webhooks.md gives receivers (Python and Node.js) accept what
the server signs, and refuse a tampered body, a wrong secret and a stale timestamp."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.outbox.signing import sign

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
SECRET = "whsec_" + "d" * 40
BODY = b'{"id":"evt_1","type":"turn.completed","created":1772366400,"org_id":"o","data":{}}'


def _block(language: str) -> str:
    found = re.findall(rf"^```{language}\n(.*?)^```$", DOC.read_text(encoding="utf-8"),
                       re.S | re.M)
    assert len(found) == 1, f"one ```{language} block expected in {DOC.name}"
    return str(found[0])


def _cases() -> list[tuple[str, str, bytes, bool]]:
    now = int(time.time())
    good = sign(SECRET, now, BODY)
    return [
        (SECRET, good, BODY, True),
        (SECRET, good, BODY.replace(b"turn.completed", b"turn.complete!"), False),
        ("whsec_" + "e" * 40, good, BODY, False),
        (SECRET, sign(SECRET, now - 301, BODY), BODY, False),  # outside 5 minutes
        (SECRET, good.replace(f"t={now}", f"t={now - 1}"), BODY, False),  # t is signed
        (SECRET, "garbage", BODY, False),
        (SECRET, f"t={now},v1={'0' * 64},{good.split(',')[1]}", BODY, True),
    ]


def test_the_python_snippet_verifies_signatures() -> None:
    namespace: dict[str, Any] = {}
    exec(compile(_block("python"), str(DOC), "exec"), namespace)
    verify: Callable[[str, str, bytes], bool] = namespace["verify_signature"]
    assert [verify(s, h, b) for s, h, b, _ in _cases()] == [ok for *_, ok in _cases()]


def test_the_node_snippet_verifies_signatures(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    cases = _cases()
    script = tmp_path / "verify.js"
    script.write_text(_block("js") + """
const cases = JSON.parse(process.argv[2]);
console.log(JSON.stringify(cases.map(([secret, header, body]) =>
  verifySignature(secret, header, Buffer.from(body, "latin1")))));
""", encoding="utf-8")
    payload = json.dumps([[s, h, b.decode("latin1")] for s, h, b, _ in cases])
    result = subprocess.run([node, str(script), payload], capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [ok for *_, ok in cases]
