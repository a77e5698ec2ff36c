"""Retake docs/images/widget-demo.png: `.venv/bin/python tests/browser/screenshot.py [URL]`
with `make run` (or any demo server) running; URL defaults to http://localhost:8080/."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from browser_harness import run_scenario, skip_reason, start_chromium

OUT = Path(__file__).parents[2] / "docs" / "images" / "widget-demo.png"


def main() -> int:
    reason = skip_reason()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    url = sys.argv[1] if len(sys.argv) > 1 else "http://localhost:8080/"
    chromium = start_chromium(Path(tempfile.mkdtemp()) / "profile")
    cdp = next(chromium)
    try:
        asyncio.run(run_scenario(cdp, "screenshot", page=url, path=str(OUT),
                                 question="How do I set up event tracking?",
                                 viewport={"width": 1280, "height": 720}))
    finally:
        chromium.close()
    print(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
