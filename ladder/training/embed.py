"""Embed training questions with the router's encoder (in process, or on Triton), cached by content digest.

The cache is rebuildable and resumable: a large set is embedded in parts of ``PART`` texts, each spanning
all lengths, each saved as it finishes, so an interrupted run redoes only the part it was in; the whole set
is then saved as one file and the parts removed. Triton's embeddings are cached apart from in-process ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from ladder.core.atomic import partial_file
from ladder.core.encoder import EncoderInfo, OnnxEncoder, Tokenizer
from ladder.core.home import encoder_dir, ladder_home

Progress = Callable[[str, int, int], None]
CHUNK = 256  # texts per in-process call (and per progress step)
PART = 4096  # texts per resumable cache part
STAGE = "embedding questions"


class Embedder(Protocol):
    """Turns texts into embeddings; ``cache_tag`` ("" in process) keeps different engines' caches apart."""

    @property
    def cache_tag(self) -> str: ...

    def embed(self, texts: Sequence[str], tick: Callable[[int], None] | None = None) -> np.ndarray: ...


class InProcessEmbedder:
    """The encoder folder's ONNX graph on ONNX Runtime, in this process (what CPU-only training uses)."""

    cache_tag = ""

    def __init__(self, encoder: str, variant: str = "int8", max_tokens: int = 512) -> None:
        directory = encoder_dir(encoder)
        self.model = OnnxEncoder(directory, variant=variant)  # type: ignore[arg-type]
        self.model.tokenizer = Tokenizer(directory, max_tokens, info=self.model.info)

    def embed(self, texts: Sequence[str], tick: Callable[[int], None] | None = None) -> np.ndarray:
        out = np.zeros((len(texts), self.model.info.dim), dtype=np.float32)
        for start in range(0, len(texts), CHUNK):
            out[start : start + CHUNK] = self.model.embed(list(texts[start : start + CHUNK]))
            if tick is not None:
                tick(len(out[start : start + CHUNK]))
        return out


def _digest(texts: Sequence[str], encoder: str, variant: str, max_tokens: int, tag: str = "") -> str:
    digest = hashlib.sha256(f"{encoder}|{variant}|{max_tokens}{'|' + tag if tag else ''}".encode())
    for text in texts:
        digest.update(hashlib.sha256(text.encode("utf-8")).digest())
    return digest.hexdigest()[:32]


def _save(path: Path, array: np.ndarray) -> None:
    """Write atomically: a reader never sees half a file."""
    with partial_file(path) as partial:
        np.save(partial, array, allow_pickle=False)


def _load(path: Path, rows: int) -> np.ndarray | None:
    if not path.is_file():
        return None
    array = np.asarray(np.load(path, allow_pickle=False), dtype=np.float32)
    return array if array.ndim == 2 and len(array) == rows else None


def _interleaved_by_length(texts: Sequence[str]) -> np.ndarray:
    """An order in which every run of ``CHUNK`` texts spans all lengths: batches within a chunk still pad
    little (the encoder sorts a call's texts by length), and progress is even, so its ETA holds."""
    by_length = np.argsort([len(t) for t in texts], kind="stable")
    chunks = max(1, -(-len(texts) // CHUNK))
    return np.concatenate([by_length[c::chunks] for c in range(chunks)]) if len(texts) else by_length


def embed_texts(
    texts: Sequence[str],
    encoder: str,
    variant: str = "int8",
    max_tokens: int = 512,
    progress: Progress | None = None,
    use_cache: bool = True,
    embedder: Embedder | None = None,
) -> np.ndarray:
    """Embeddings [len(texts), dim] from ``embedder`` (default: in process); cached under the Ladder home."""
    tag = embedder.cache_tag if embedder is not None else ""
    graph = variant  # what the cache is keyed on: a per-token int8 graph embeds unlike a per-tensor one
    info = EncoderInfo.load(encoder_dir(encoder))
    if variant == "int8" and info.int8_activations == "per_token":
        graph = "int8-per-token"
    if variant == "int8":  # sums made exact on every CPU (EXACT_INT8): embeddings cached before it are stale
        graph += "-exact-sums"
        if info.int8_kernels == "same_bits":  # float steps rewritten to the same bits on every CPU
            graph += "-same-bits"
    root = ladder_home() / "cache" / "embeddings"
    cache = root / f"{_digest(texts, encoder, graph, max_tokens, tag)}.npy"
    if use_cache and (cached := _load(cache, len(texts))) is not None:
        return cached
    engine = embedder if embedder is not None else InProcessEmbedder(encoder, variant, max_tokens)
    order = _interleaved_by_length(texts)
    parts = [order[i : i + PART] for i in range(0, len(texts), PART)]
    resumable = use_cache and len(parts) > 1
    done = 0
    out: np.ndarray | None = None

    def tick(rows: int) -> None:
        nonlocal done
        done += rows
        if progress:
            progress(STAGE, done, len(texts))

    if progress:
        progress(STAGE, 0, len(texts))
    part_files = []
    for index in parts:
        chunk = [texts[i] for i in index]
        part_file = root / "parts" / f"{_digest(chunk, encoder, graph, max_tokens, tag)}.npy"
        part_files.append(part_file)
        vectors = _load(part_file, len(chunk)) if resumable else None
        if vectors is None:
            vectors = engine.embed(chunk, tick)
            if resumable:
                _save(part_file, vectors)
        else:
            tick(len(chunk))
        if out is None:
            out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
        out[index] = vectors
    if out is None:  # no texts: the engine still knows the width
        out = engine.embed([])
    if use_cache:
        _save(cache, out)
        for part_file in part_files:
            part_file.unlink(missing_ok=True)
    return out
