"""Regenerate the switchboard.v1 Python package and the ghz protoset from proto/.

Generated code lands in src/switchboard/ (never edit it by hand). With --check the
files are generated into a temporary folder and compared with the committed copy;
the exit status is 1 when they differ, so CI catches a stale checkout.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_PACKAGE = "switchboard"
PROTOSET = Path("bench") / "ghz" / "switchboard.protoset"
INIT_TEXT = '"""Generated from proto/ by scripts/gen_proto.py. Do not edit."""\n'


def _proto_files() -> list[str]:
    return sorted(
        str(p.relative_to(PROTO_DIR))
        for p in (PROTO_DIR / "switchboard").rglob("*.proto")
    )


def generate(dest: Path) -> None:
    """Write the generated package under dest/src and the protoset under dest/bench."""
    src_out = dest / "src"
    src_out.mkdir(parents=True, exist_ok=True)
    (dest / PROTOSET).parent.mkdir(parents=True, exist_ok=True)
    wkt_include = str(resources.files("grpc_tools") / "_proto")
    files = _proto_files()
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{wkt_include}",
        f"--python_out={src_out}",
        f"--pyi_out={src_out}",
        f"--grpc_python_out={src_out}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed generating Python code")
    set_args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{wkt_include}",
        "--include_imports",
        f"--descriptor_set_out={dest / PROTOSET}",
        *files,
    ]
    if protoc.main(set_args) != 0:
        raise SystemExit("protoc failed writing the protoset")
    for pkg_dir in sorted({(src_out / f).parent for f in files} | {src_out / OUT_PACKAGE}):
        (pkg_dir / "__init__.py").write_text(INIT_TEXT)
        (pkg_dir / "py.typed").write_text("")


def _generated_paths(base: Path) -> list[Path]:
    out = [p.relative_to(base) for p in (base / "src" / OUT_PACKAGE).rglob("*") if p.is_file()]
    out.append(PROTOSET)
    return sorted(p for p in out if "__pycache__" not in p.parts)


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        stale = []
        fresh_paths = _generated_paths(fresh)
        committed_paths = _generated_paths(ROOT)
        for rel in sorted(set(fresh_paths) | set(committed_paths)):
            a, b = fresh / rel, ROOT / rel
            if not a.exists() or not b.exists() or not filecmp.cmp(a, b, shallow=False):
                stale.append(str(rel))
        if stale:
            print("generated code is stale; run `make proto`:", *stale, sep="\n  ")
            return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed copy is stale")
    ns = parser.parse_args()
    if ns.check:
        return check()
    target = ROOT / "src" / OUT_PACKAGE
    if target.exists():
        shutil.rmtree(target)
    generate(ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
