"""Dense retrieval for the offline `kb` provider: static word embeddings, mean-pooled.

The model is WordLlama's `l2_supercat` (MIT licence): the token-embedding table of a large
language model distilled to 256 dimensions, 32,000 tokens (16 MB), with the Llama-2
tokenizer. Both files ship inside the `wordllama` wheel, so they load from site-packages with
no download; a sentence embedding is the average of its token vectors, so a 200-character
question embeds in well under a millisecond on one CPU core.

The files are read directly (`safetensors` + `tokenizers`) rather than through
`wordllama.WordLlama.load()`: in 0.4.0 that looks for the tokenizer in a folder the wheel
does not have and then tries to download it from a model hub (offline it fails), and importing
the package calls `logging.basicConfig`, which would reconfigure the host's logging.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float32]

_WEIGHTS = ("weights", "l2_supercat_256.safetensors")
_TOKENIZER = ("tokenizers", "l2_supercat_tokenizer_config.json")
_MAX_TOKENS = 2048  # longer texts are embedded from their first tokens: bounded work
_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Encoder:
    table: Matrix  # (vocabulary, dimensions)
    tokenizer: object  # tokenizers.Tokenizer (untyped)

    def encode(self, texts: list[str]) -> Matrix:
        """Unit-length mean-pooled embeddings, one row per text (zeros for empty texts)."""
        out = np.zeros((len(texts), self.table.shape[1]), dtype=np.float32)
        for row, text in enumerate(texts):
            ids = self.tokenizer.encode(text, add_special_tokens=False).ids  # type: ignore[attr-defined]
            if not ids:
                continue
            vector = self.table[np.asarray(ids[:_MAX_TOKENS], dtype=np.int64)].mean(axis=0)
            norm = float(np.linalg.norm(vector))
            if norm:
                out[row] = vector / norm
        return out


def model_dir() -> Path:
    """The installed `wordllama` package folder (found without importing it)."""
    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the kb provider needs the `wordllama` package (pip install wordllama)")
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def encoder() -> Encoder:
    """The process-wide encoder, loaded on first use (about 20 MB of files)."""
    with _lock:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        root = model_dir()
        table = load_file(str(root.joinpath(*_WEIGHTS)))["embedding.weight"]
        tokenizer = Tokenizer.from_file(str(root.joinpath(*_TOKENIZER)))
        tokenizer.no_padding()
        tokenizer.no_truncation()
        return Encoder(np.ascontiguousarray(table, dtype=np.float32), tokenizer)
