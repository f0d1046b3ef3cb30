"""Embed texts on Triton's ``encoder`` model over gRPC: ladder's own tokeniser, batched, concurrent, retried.

``ladder train --embed-with triton://HOST:PORT`` sends the training questions to the ``encoder`` model of a
repository written by ``ladder export`` (the model that outputs the ``embedding`` tensor the ``router``
ensemble feeds to the head). Texts are tokenised here with ``ladder.core.encoder.Tokenizer`` — exactly as the
gateway does before calling ``router`` — so only ``input_ids``/``attention_mask`` travel. Before any work the
served encoder's identity (``ladder_*`` parameters of its ``config.pbtxt``) must match the local encoder.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from ladder.core.encoder import Encoded, EncoderInfo, Tokenizer
from ladder.core.errors import LadderError
from ladder.core.home import encoder_dir
from ladder.training.embed import Progress, embed_texts

DEFAULT_GRPC_PORT = 8001
# gRPC codes worth another try: the server restarting or overloaded, a deadline hit under load
TRANSIENT = frozenset(
    f"StatusCode.{c}" for c in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED")
)


class TritonEmbedError(LadderError):
    """Triton cannot embed for training: unreachable, model missing, another encoder, or a failed call."""


@dataclass(frozen=True)
class TritonEmbedSettings:
    """Where the encoder is served and how hard to drive it."""

    url: str
    model: str = "encoder"
    batch_rows: int = 32  # rows per request, of similar token length (the encoder's max_batch_size caps it)
    in_flight: int = 4  # concurrent requests, so Triton's dynamic batcher has work queued
    timeout_s: float = 120.0  # per request
    retries: int = 4  # extra attempts on a transient error, with exponential backoff
    backoff_s: float = 0.5


@dataclass(frozen=True)
class ServedEncoder:
    """What the repository's ``encoder`` model says it serves."""

    name: str
    source: str
    dim: int
    variant: str
    engine: str
    max_batch: int
    int8_kernels: str = "fast"

    @property
    def cache_tag(self) -> str:
        """Part of the embedding cache key: Triton's numbers are cached apart from in-process ones, and an int8
        graph's same-bits kernels apart from the fast ones."""
        kernels = ":same_bits" if self.variant == "int8" and self.int8_kernels == "same_bits" else ""
        return f"triton:{self.engine}:{self.variant}{kernels}"


def grpc_address(url: str) -> str:
    """``host:port`` of ``triton://HOST[:PORT]`` or ``grpc://HOST[:PORT]`` (gRPC, port 8001 by default)."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme in ("http", "https"):
        raise TritonEmbedError(
            f"--embed-with {url}: embeddings are fetched over Triton's gRPC endpoint; give "
            f"triton://{parts.hostname or 'HOST'}:{DEFAULT_GRPC_PORT} (the gRPC port, not the HTTP one)"
        )
    if parts.scheme not in ("triton", "grpc") or not parts.hostname:
        raise TritonEmbedError(f"--embed-with {url!r}: expected triton://HOST:PORT or grpc://HOST:PORT")
    try:
        port = parts.port or DEFAULT_GRPC_PORT
    except ValueError as exc:
        raise TritonEmbedError(f"--embed-with {url!r}: bad port ({exc})") from exc
    return f"{parts.hostname}:{port}"


def _param(config: dict[str, Any], key: str) -> str | None:
    value = config.get("parameters", {}).get(key)
    return None if value is None else str(value.get("string_value", ""))


def served_encoder(config: dict[str, Any], model: str) -> ServedEncoder:
    """Read the identity parameters and the ``embedding`` output of a model config (JSON form)."""
    outputs = {o["name"]: o for o in config.get("output", [])}
    if "embedding" not in outputs:
        raise TritonEmbedError(
            f"Triton model {model!r} has no 'embedding' output (outputs: {sorted(outputs)}); point "
            "--embed-with at a repository written by `ladder export` (its 'encoder' model)"
        )
    keys = ("ladder_encoder", "ladder_encoder_source", "ladder_encoder_dim", "ladder_encoder_variant")
    values = {k: _param(config, k) for k in (*keys, "ladder_engine", "ladder_int8_kernels")}
    missing = [k for k in keys if values[k] is None]
    if missing:
        raise TritonEmbedError(
            f"Triton model {model!r} does not say which encoder it serves (no {', '.join(missing)} "
            "parameters in its config.pbtxt); re-export the repository with `ladder export`"
        )
    dims = [int(d) for d in outputs["embedding"].get("dims", [])]
    return ServedEncoder(
        name=str(values["ladder_encoder"]),
        source=str(values["ladder_encoder_source"]),
        dim=dims[-1] if dims else int(str(values["ladder_encoder_dim"])),
        variant=str(values["ladder_encoder_variant"]),
        engine=values["ladder_engine"] or "unknown",
        max_batch=int(config.get("max_batch_size", 0)),
        int8_kernels=values["ladder_int8_kernels"] or "fast",  # repositories written before it: fast
    )


def check_identity(served: ServedEncoder, info: EncoderInfo, url: str) -> None:
    """Refuse a repository serving another encoder than the one training (and the checkpoint) names."""
    if (served.name, served.dim) != (info.name, info.dim) or (
        served.source and info.source and served.source != info.source
    ):
        raise TritonEmbedError(
            f"Triton at {url} serves encoder {served.name} ({served.dim}-d, {served.source}), but training "
            f"uses {info.name} ({info.dim}-d, {info.source}); export the repository from a checkpoint of "
            f"{info.name} or train with --encoder {served.name}"
        )


class TritonEmbedder:
    """Embeds texts through Triton; use as a context manager (``connect`` runs on entry)."""

    def __init__(self, settings: TritonEmbedSettings, directory: Path, max_tokens: int = 512) -> None:
        if settings.batch_rows < 1 or settings.in_flight < 1 or settings.retries < 0:
            raise ValueError("batch_rows and in_flight must be at least 1, retries at least 0")
        self.settings = settings
        self.address = grpc_address(settings.url)
        self.info = EncoderInfo.load(directory)
        self.tokenizer = Tokenizer(directory, max_tokens, info=self.info)
        self.served: ServedEncoder | None = None
        self.retried = 0  # transient failures that were retried (for reports and tests)
        self._loop = asyncio.new_event_loop()
        self._client: Any = None

    @property
    def cache_tag(self) -> str:
        return self._require().cache_tag

    @property
    def variant(self) -> str:
        return self._require().variant

    def _require(self) -> ServedEncoder:
        if self.served is None:
            raise RuntimeError("TritonEmbedder.connect() has not run")
        return self.served

    def __enter__(self) -> TritonEmbedder:
        try:
            self.connect()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def connect(self) -> ServedEncoder:
        """Check that Triton is up, the model is ready and serves this encoder; raise a clear error if not."""
        self.served = self._loop.run_until_complete(self._connect())
        check_identity(self.served, self.info, self.settings.url)
        return self.served

    def close(self) -> None:
        if self._client is not None:
            self._loop.run_until_complete(self._client.close())
            self._client = None
        if not self._loop.is_closed():
            self._loop.close()

    async def _connect(self) -> ServedEncoder:
        from tritonclient.grpc.aio import InferenceServerClient
        from tritonclient.utils import InferenceServerException

        self._client = InferenceServerClient(self.address)
        model, timeout = self.settings.model, min(self.settings.timeout_s, 10.0)
        try:
            live = await self._client.is_server_live(client_timeout=timeout)
        except InferenceServerException as exc:
            raise TritonEmbedError(f"Triton at {self.settings.url} is unreachable ({exc.message()})") from exc
        if not live:
            raise TritonEmbedError(f"Triton at {self.settings.url} answers but is not live")
        if not await self._client.is_model_ready(model, client_timeout=timeout):
            index = await self._client.get_model_repository_index(as_json=True, client_timeout=timeout)
            names = sorted(m.get("name", "?") for m in index.get("models", []))
            raise TritonEmbedError(
                f"Triton at {self.settings.url} has no ready model {model!r} (its repository has: "
                f"{', '.join(names) or 'nothing'}); serve a repository written by `ladder export`"
            )
        config = await self._client.get_model_config(model, as_json=True, client_timeout=timeout)
        return served_encoder(config["config"], model)

    def embed(self, texts: Sequence[str], tick: Callable[[int], None] | None = None) -> np.ndarray:
        """Embeddings float32 [len(texts), dim] in input order; ``tick(rows)`` after each finished request."""
        served = self._require()
        encoded = self.tokenizer.encode(list(texts))
        order = np.argsort(np.asarray(encoded.lengths), kind="stable").tolist()
        rows = min(self.settings.batch_rows, served.max_batch or self.settings.batch_rows)
        batches = [order[i : i + rows] for i in range(0, len(order), rows)]
        out = np.zeros((len(order), served.dim), dtype=np.float32)
        if batches:
            results = self._loop.run_until_complete(self._embed_all(encoded, batches, tick))
            for index, vectors in zip(batches, results, strict=True):
                out[index] = vectors
        return out

    async def _embed_all(
        self, encoded: Encoded, batches: list[list[int]], tick: Callable[[int], None] | None
    ) -> list[np.ndarray]:
        gate = asyncio.Semaphore(self.settings.in_flight)

        async def one(index: list[int]) -> np.ndarray:
            async with gate:
                batch = encoded.take(index)
                vectors = await self._infer_with_retries(batch.input_ids, batch.attention_mask)
            if tick is not None:
                tick(len(index))
            return vectors

        tasks = [asyncio.ensure_future(one(index)) for index in batches]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _infer_with_retries(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        from tritonclient.utils import InferenceServerException

        attempt = 0
        while True:
            try:
                return await self._infer(ids, mask)
            except InferenceServerException as exc:
                if exc.status() not in TRANSIENT or attempt >= self.settings.retries:
                    tries = f" after {attempt + 1} attempts" if attempt else ""
                    raise TritonEmbedError(
                        f"Triton at {self.settings.url} failed to embed a batch of {len(ids)}{tries}: "
                        f"{exc.status()} {exc.message()}"
                    ) from exc
            self.retried += 1
            await asyncio.sleep(min(self.settings.backoff_s * 2**attempt, 30.0))
            attempt += 1

    async def _infer(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        from tritonclient.grpc import InferInput, InferRequestedOutput

        inputs = [InferInput(name, list(ids.shape), "INT64") for name in ("input_ids", "attention_mask")]
        inputs[0].set_data_from_numpy(np.ascontiguousarray(ids, dtype=np.int64))
        inputs[1].set_data_from_numpy(np.ascontiguousarray(mask, dtype=np.int64))
        result = await self._client.infer(
            self.settings.model,
            inputs,
            outputs=[InferRequestedOutput("embedding")],
            client_timeout=self.settings.timeout_s,
        )
        vectors = np.asarray(result.as_numpy("embedding"), dtype=np.float32)
        dim = self._require().dim
        if vectors.shape != (len(ids), dim) or not np.isfinite(vectors).all():
            raise TritonEmbedError(
                f"Triton model {self.settings.model!r} returned embeddings {vectors.shape}, expected "
                f"({len(ids)}, {dim}) finite values"
            )
        return vectors


@contextmanager
def embed_for_training(
    url: str | None, encoder: str, variant: str, max_tokens: int, progress: Progress | None
) -> Iterator[tuple[str, Callable[[list[str]], np.ndarray] | None]]:
    """``(variant, embed)`` for ``ladder.training.train.train``: in process (``embed`` None) without a URL, else
    Triton's encoder, checked before anything else runs; the checkpoint records the variant Triton serves."""
    if url is None:
        yield variant, None
        return
    settings = TritonEmbedSettings(url)
    with TritonEmbedder(settings, encoder_dir(encoder), max_tokens) as embedder:

        def embed(texts: list[str]) -> np.ndarray:
            return embed_texts(texts, encoder, embedder.variant, max_tokens, progress, embedder=embedder)

        yield embedder.variant, embed
