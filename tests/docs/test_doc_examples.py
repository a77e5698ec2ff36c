"""Every shell example in README.md and docs/*.md runs as written against a server started
the way `make run` starts it (`switchboard serve --demo`, default database location; here
ephemeral ports and a temporary data directory).

Examples run in order, one server per file, through one bash session (so `TOKEN=$(...)`
carries over). What an example shows as its output (the `#` lines right under it, except
`# (notes)`, or a trailing `# 200 200 429`) is compared by shape: status codes, JSON keys,
`[DONE]`; never the model's words. Ids the docs elide (`conv_…`, `int_…`, `sk_live_…`)
are filled in from what earlier examples printed, as a reader would. A failure names the
file and line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND_TIMEOUT_S = 60
# Commands a doc shows that need tools or servers this test does not run (load tests,
# benchmark servers, the build itself).
# (An assignment `B=...` or `TOKEN=$(...)` runs; `VAR=x make bench`, a command, does not.)
RUNNABLE = re.compile(
    r"^(?:(?:curl|for|switchboard|\.venv/bin/switchboard)\b|[A-Z_]+=(?:\$\(|\S+$))")
# Servers are what this test starts itself (`switchboard serve` as `make run` does).
SERVER = re.compile(r"^(\.venv/bin/)?switchboard serve\b")
TRAILING_COMMENT = re.compile(r"\s{2,}#\s?(.*)$")
KEY = re.compile(r'"([A-Za-z_][A-Za-z0-9_-]*)"\s*:')
STATUS_LINE = re.compile(r"^HTTP/[\d.]+ (\d{3})", re.M)
CODE = re.compile(r"\b([1-5]\d\d)s?\b")
# Elided ids in the docs and what fills them in (the latest one printed so far).
ELIDED = {
    "conv_…": re.compile(r"conv_[0-9a-f]{32}"),
    "chat_…": re.compile(r"chat_[0-9a-f-]{36}"),
    "int_…": re.compile(r"int_[0-9a-f]{32}"),
    "sk_live_…": re.compile(r"sk_live_[A-Za-z0-9_-]{16,}"),
    "we_…": re.compile(r"we_[0-9a-f]{24}"),
}


@dataclass
class Example:
    path: Path
    line: int
    command: str
    expected: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _complete(text: str) -> bool:
    if text.rstrip().endswith(("\\", "|", "&&")) or text.count("(") > text.count(")"):
        return False
    if re.match(r"^\s*for\b", text) and not re.search(r"\bdone\b", text):
        return False
    try:
        shlex.split(text, comments=True)
    except ValueError:  # an open quote: the command goes on
        return False
    return True


def extract(path: Path) -> list[Example]:
    """The commands of the file's ```sh blocks, with the output lines they show."""
    found: list[Example] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    in_block = False
    pending: list[str] = []
    start = 0
    last: Example | None = None
    for number, line in enumerate(lines, 1):
        if line.startswith("```"):
            in_block = not in_block and line.strip() in ("```sh", "```bash")
            pending, last = [], None
            continue
        if not in_block:
            continue
        if pending:
            pending.append(line)
        elif not line.strip():
            last = None
            continue
        elif line.lstrip().startswith("#"):
            note = line.lstrip()[1:].strip()
            if last is not None and not note.startswith("("):  # "(...)": a note, not output
                last.expected.append(note)
            continue
        else:
            pending, start = [line], number
        text = "\n".join(pending)
        if not _complete(text):
            continue
        pending = []
        expected = []
        tail = TRAILING_COMMENT.search(text.splitlines()[-1])
        if tail and "'" not in tail.group(0) and '"' not in tail.group(0):
            expected.append(tail.group(1))
            text = text[: len(text) - len(tail.group(0))]
        last = Example(path, start, text.strip(), expected)
        found.append(last)
    return found


class Shell:
    """One bash session; each command's output and exit status are read back."""

    def __init__(self, proc: asyncio.subprocess.Process, out: Path) -> None:
        self.proc = proc
        self.out = out
        self.count = 0

    @classmethod
    async def start(cls, env: dict[str, str], out: Path) -> Shell:
        proc = await asyncio.create_subprocess_exec(
            "bash", "--noprofile", "--norc", cwd=ROOT, env=env, start_new_session=True,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        return cls(proc, out)

    async def run(self, command: str) -> tuple[int, str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.count += 1
        target = self.out / f"{self.count}.out"
        marker = f"__done_{self.count}__"
        self.proc.stdin.write(
            f"{{\n{command}\n}} > {target} 2>&1 </dev/null; echo \"{marker} $?\"\n".encode())
        await self.proc.stdin.drain()
        while True:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), COMMAND_TIMEOUT_S)
            assert raw, "bash exited"
            if raw.decode().startswith(marker):
                code = int(raw.decode().split()[1])
                return code, target.read_text(encoding="utf-8", errors="replace")

    async def close(self) -> None:
        if self.proc.returncode is None:
            # The session's own process group: whatever an example left running goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()


def prepare(command: str, http_port: int, grpc_port: int, seen: str) -> str:
    """The command as a reader would type it against this server."""
    command = re.sub(r"(localhost|127\.0\.0\.1):8080", f"127.0.0.1:{http_port}", command)
    command = command.replace("127.0.0.1:50051", f"127.0.0.1:{grpc_port}")
    program = f"{shlex.quote(sys.executable)} -m launcher.cli"
    command = re.sub(r"(?m)(^|\s)(\.venv/bin/)?switchboard chat\b",
                     rf"\1{program} chat --core 127.0.0.1:{grpc_port}", command)
    # Also inside a command substitution: `TOKEN=$(switchboard ... | tail -1)`.
    command = re.sub(r"(?m)(^|\s|\$\()(\.venv/bin/)?switchboard\b", rf"\1{program}", command)
    for elided, pattern in ELIDED.items():
        if elided in command:
            latest = pattern.findall(seen)
            assert latest, f"nothing printed so far to fill in {elided}"
            command = command.replace(elided, latest[-1])
    if re.match(r"^curl\b", command) and not re.search(r"\s-(w|o|i|D)\b|\||\$\(", command):
        # Plain curl: also report the status (its own output is unchanged above it).
        command += " -w '\\n__status__ %{http_code}\\n'"
    return command


def check(example: Example, code: int, output: str) -> None:
    context = f"{example.where}: {example.command}\n--- output ---\n{output[-3000:]}"
    assert code == 0, f"exit status {code}\n{context}"
    statuses = [int(s) for s in re.findall(r"__status__ (\d{3})", output)]
    statuses += [int(s) for s in STATUS_LINE.findall(output)]
    assert all(s < 500 for s in statuses), f"server error\n{context}"
    if not STATUS_LINE.search("\n".join(example.expected)):
        # An example that shows no status is meant to work.
        assert all(s < 400 for s in statuses), f"refused\n{context}"
    assert "Traceback" not in output, context
    shown = "\n".join(example.expected)
    if not shown:
        return
    want = STATUS_LINE.findall(shown)
    if want:
        assert STATUS_LINE.findall(output) == want, f"statuses {want}\n{context}"
    elif statuses and KEY.search(shown):
        assert all(200 <= s < 300 for s in statuses), f"expected a success\n{context}"
    if "%{http_code}" in example.command:
        codes = set(CODE.findall(shown))
        got = set(output.split())
        assert codes <= got, f"status codes {sorted(codes)} not all in {sorted(got)}\n{context}"
        if re.fullmatch(r"[\d ]+", shown.strip()):
            assert output.split() == shown.split(), f"status codes\n{context}"
    missing = set(KEY.findall(shown)) - set(KEY.findall(output))
    assert not missing, f"keys {sorted(missing)} missing\n{context}"
    if "data: [DONE]" in shown:
        assert "data: [DONE]" in output, context


async def _serve(data_dir: Path, env: dict[str, str]) -> tuple[asyncio.subprocess.Process,
                                                                int, int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "launcher.cli", "serve", "--demo", "--grpc-port", "0",
        "--http-port", "0", cwd=data_dir, env={**env, "SWITCHBOARD_LOG_LEVEL": "INFO"},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    ports: dict[str, int] = {}
    seen = []
    while len(ports) < 2:
        raw = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert raw, "serve exited:\n" + "".join(seen)
        line = raw.decode()
        seen.append(line)
        match = re.search(r"(core|shim) listening on (?:http://)?127\.0\.0\.1:(\d+)", line)
        if match:
            ports[match.group(1)] = int(match.group(2))

    async def drain() -> None:
        assert proc.stderr is not None
        while await proc.stderr.readline():
            pass

    asyncio.get_running_loop().create_task(drain())
    return proc, ports["shim"], ports["core"]


def _files_with_examples() -> list[Path]:
    return [p for p in DOCS if any(RUNNABLE.match(e.command) and not SERVER.match(e.command)
                                   for e in extract(p))]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", _files_with_examples(), ids=lambda p: p.name)
async def test_doc_examples_run_as_written(path: Path, tmp_path: Path) -> None:
    if shutil.which("curl") is None or shutil.which("bash") is None:
        pytest.skip("the doc examples need curl and bash")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "SWITCHBOARD_DATA_DIR": str(data_dir / ".switchboard"),
           "SWITCHBOARD_LOG_LEVEL": "WARNING"}
    server, http_port, grpc_port = await _serve(data_dir, env)
    shell = await Shell.start(env, out)
    seen = ""
    try:
        for example in extract(path):
            if not RUNNABLE.match(example.command) or SERVER.match(example.command):
                continue
            command = prepare(example.command, http_port, grpc_port, seen)
            try:
                code, output = await shell.run(command)
            except TimeoutError:
                pytest.fail(f"{example.where}: no answer in {COMMAND_TIMEOUT_S} s: "
                            f"{example.command}")
            check(example, code, output)
            seen += output
    finally:
        await shell.close()
        server.terminate()
        await server.wait()


def test_the_extractor_sees_the_readme_examples() -> None:
    """Guards the test above against passing by finding nothing."""
    examples = [e for e in extract(ROOT / "README.md") if RUNNABLE.match(e.command)]
    assert len([e for e in examples if e.command.startswith("curl")]) >= 10
    first = next(e for e in examples if "/api/sdk/chat " in e.command + " ")
    assert "Token expired" in first.command and KEY.findall("\n".join(first.expected))


def test_no_doc_points_at_spec_files_outside_the_repository() -> None:
    outside = re.compile(r"(shared/)?spec/[\w.-]+\.txt")
    texts = [*DOCS, *sorted((ROOT / "src").rglob("*.py"))]
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in texts
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
            if outside.search(line)]
    assert not hits, hits


def test_readme_and_benchmarks_agree_on_how_long_make_bench_takes() -> None:
    def minutes(text: str) -> set[str]:
        return {m for line in text.splitlines() if "make bench" in line
                for m in re.findall(r"(\d+) minutes?", line)}

    readme = minutes((ROOT / "README.md").read_text(encoding="utf-8"))
    bench = minutes((ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8"))
    assert readme and readme == bench, (readme, bench)
