"""Embed training questions with the same ONNX encoder the router runs, caching by content digest."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence

import numpy as np

from ladder.encoder import OnnxEncoder, Tokenizer
from ladder.home import encoder_dir, ladder_home

Progress = Callable[[str, int, int], None]
CHUNK = 256


def _digest(texts: Sequence[str], encoder: str, variant: str, max_tokens: int) -> str:
    digest = hashlib.sha256(f"{encoder}|{variant}|{max_tokens}".encode())
    for text in texts:
        digest.update(hashlib.sha256(text.encode("utf-8")).digest())
    return digest.hexdigest()[:32]


def embed_texts(
    texts: Sequence[str],
    encoder: str,
    variant: str = "int8",
    max_tokens: int = 512,
    progress: Progress | None = None,
    use_cache: bool = True,
) -> np.ndarray:
    """Embeddings [len(texts), dim]; a rebuildable cache lives under the Ladder home."""
    cache = ladder_home() / "cache" / "embeddings" / f"{_digest(texts, encoder, variant, max_tokens)}.npy"
    if use_cache and cache.is_file():
        return np.asarray(np.load(cache, allow_pickle=False), dtype=np.float32)
    directory = encoder_dir(encoder)
    model = OnnxEncoder(directory, variant=variant)  # type: ignore[arg-type]
    model.tokenizer = Tokenizer(directory, max_tokens, info=model.info)
    # long texts dominate the cost: embed in length order so batches pad little
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), model.info.dim), dtype=np.float32)
    for start in range(0, len(texts), CHUNK):
        if progress:
            progress("embedding questions", start, len(texts))
        index = order[start : start + CHUNK]
        out[index] = model.embed([texts[i] for i in index])
    if progress:
        progress("embedding questions", len(texts), len(texts))
    if use_cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(partial, out, allow_pickle=False)
        os.replace(partial, cache)
    return out
