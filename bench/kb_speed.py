"""Speed of the offline `kb` agent on the demo knowledge base (`python -m bench.kb_speed`).

Measures, in one process: loading the dense model (once per process), building the index of
the demo help center with its embeddings (once per change of the articles), and answering a
200-character question and a 10,000-character message (p50 / p99 over repeated calls; the
provider reads the first `_MAX_INPUT_CHARS` characters of a message). Targets: 5 ms p50 for
the question, 30 ms p50 for the long message.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from core.knowledge import load_knowledge_base
from core.providers import kb as kb_module
from core.providers import kb_dense
from core.providers.kb import KbProvider

KB_DIR = Path(__file__).resolve().parents[1] / "src" / "core" / "demo" / "kb"
QUESTION = (
    "hey, our accountant keeps asking me for the PDFs of the last few bills and I honestly "
    "can't find where they live in the app, also is there a way to have them sent to finance "
    "automatically every month?"
)[:200]
LONG = (
    "Hi team, long story short: we moved our tracking snippet to a new site last week and "
    "since then nothing shows up in live view, we checked the console and the ad blocker, "
    "our developers also rotated the secret key and now the exports fail with 401. "
) * 60


def _timed(fn: object, runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append((time.perf_counter() - started) * 1000.0)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def main() -> None:
    started = time.perf_counter()
    kb_dense.encoder()
    load_ms = (time.perf_counter() - started) * 1000.0
    kb = load_knowledge_base(KB_DIR)
    started = time.perf_counter()
    kb_module._build_index.cache_clear()
    kb_module._build_index(kb)
    index_ms = (time.perf_counter() - started) * 1000.0
    provider = KbProvider(kb)
    long_message = LONG[:10_000]
    q50, q99 = _timed(lambda: provider.answer(QUESTION), 300)
    l50, l99 = _timed(lambda: provider.answer(long_message), 100)
    print(f"dense model load (once per process): {load_ms:.0f} ms")
    print(f"index + embeddings of {len(kb.documents)} articles (once per change): "
          f"{index_ms:.0f} ms")
    print(f"{len(QUESTION)}-char question: p50 {q50:.2f} ms, p99 {q99:.2f} ms (target p50 <= 5 ms)")
    print(f"{len(long_message):,}-char message: p50 {l50:.2f} ms, p99 {l99:.2f} ms "
          "(target p50 <= 30 ms)")


if __name__ == "__main__":
    main()
