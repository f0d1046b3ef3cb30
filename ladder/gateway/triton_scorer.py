"""A scorer that calls Triton's ``router`` ensemble over gRPC (asyncio), with a configured fallback when down.

The gRPC clients are created inside the running event loop (``await scorer.start()``), never at import.
Calls carry a timeout and the current W3C ``traceparent`` (so Triton's spans join the gateway's trace). A
failed call marks Triton down and is answered by the configured fallback; while down, calls go straight to
the fallback and a health probe on a fresh channel (gRPC's own reconnect backs off for seconds) brings
Triton back as soon as the ``router`` model is ready again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ladder.core.router import Router
from ladder.core.scoring import Scorer
from ladder.gateway.errors import ScorerUnavailableError
from ladder.gateway.tracing import inject_context

OnUnavailable = Literal["embedded", "default_model", "error"]


class TritonScorerSettings(BaseModel):
    """Where Triton is and what to do when it is not there."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str = Field(default="127.0.0.1:8001", description="Triton gRPC host:port")
    model: str = Field(default="router", description="The ids → p_correct ensemble")
    timeout_s: float = Field(default=1.0, gt=0, description="Deadline of one inference call")
    connections: int = Field(default=2, ge=1, le=64, description="gRPC channels used round-robin")
    max_batch: int = Field(default=64, ge=1, description="Rows per call (the repository's max_batch_size)")
    health_interval_s: float = Field(default=0.5, gt=0, description="Probe period while Triton is down")
    on_unavailable: OnUnavailable = Field(
        default="embedded",
        description="embedded: the in-process scorer; default_model: P=1 for it; error: 503",
    )
    default_model: str | None = Field(default=None, description="Checkpoint label used by default_model")

    @model_validator(mode="after")
    def _default_named(self) -> TritonScorerSettings:
        if self.on_unavailable == "default_model" and not self.default_model:
            raise ValueError("on_unavailable=default_model needs default_model")
        return self


class TritonScorer:
    """``Scorer`` backed by Triton; ``score_ids`` may be called from worker threads while the loop runs."""

    def __init__(
        self,
        labels: Sequence[str],
        settings: TritonScorerSettings | None = None,
        fallback: Scorer | None = None,
    ) -> None:
        self.settings = settings or TritonScorerSettings()
        self._labels = tuple(labels)
        if self.settings.on_unavailable == "embedded" and fallback is None:
            raise ValueError("on_unavailable=embedded needs a fallback scorer")
        if fallback is not None and tuple(fallback.labels) != self._labels:
            raise ValueError(f"fallback labels {fallback.labels} differ from {self._labels}")
        if self.settings.default_model is not None and self.settings.default_model not in self._labels:
            raise ValueError(f"default_model {self.settings.default_model!r} is not one of {self._labels}")
        self.fallback = fallback
        self.up = False
        self.counts: Counter[str] = Counter()  # "triton", "fallback", "failures", "recoveries"
        self._counts_lock = threading.Lock()
        self._clients: list[Any] = []
        self._next = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._probe: asyncio.Task[None] | None = None
        self._recovered = asyncio.Event()
        self._last_error = "not ready"

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

    def _client(self) -> Any:
        from tritonclient.grpc.aio import InferenceServerClient

        return InferenceServerClient(self.settings.url)

    async def start(self) -> None:
        """Open the channels (inside the running loop) and check the model once; never raises when down."""
        self._loop = asyncio.get_running_loop()
        self._clients = [self._client() for _ in range(self.settings.connections)]
        if await self._ready(self._clients[0]):
            await self._check_model(self._clients[0])
            self.up = True
        else:
            self._mark_down()

    async def close(self) -> None:
        """Stop probing and close every channel."""
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        for client in self._clients:
            await client.close()
        self._clients = []

    async def _ready(self, client: Any) -> bool:
        from tritonclient.utils import InferenceServerException

        try:
            return bool(
                await client.is_model_ready(self.settings.model, client_timeout=self.settings.timeout_s)
            )
        except (InferenceServerException, OSError):
            return False

    async def _check_model(self, client: Any) -> None:
        """The served model must output one P(correct) column per label."""
        config = (await client.get_model_config(self.settings.model, as_json=True))["config"]
        dims = next(o["dims"] for o in config["output"] if o["name"] == "p_correct")
        if [int(d) for d in dims] != [len(self._labels)]:
            raise ScorerUnavailableError(
                f"Triton model {self.settings.model} outputs p_correct {dims}, expected [{len(self._labels)}]"
            )

    def _mark_down(self) -> None:
        self.up = False
        self._recovered.clear()
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(
                self._probe_until_ready(), name="triton-probe"
            )

    async def _probe_until_ready(self) -> None:
        """While down: probe a fresh channel each period; swap fresh channels in once the model is ready."""
        while True:
            await asyncio.sleep(self.settings.health_interval_s)
            probe = self._client()
            if await self._ready(probe):
                fresh = [probe] + [self._client() for _ in range(self.settings.connections - 1)]
                old, self._clients = self._clients, fresh
                for client in old:
                    await client.close()
                self.up = True
                self._count("recoveries")
                self._recovered.set()
                return
            await probe.close()

    async def wait_until_up(self, timeout: float) -> bool:
        """Wait (up to ``timeout`` s) for Triton to be in use again; for tests and readiness probes."""
        if self.up:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._recovered.wait(), timeout)
        return self.up

    async def _infer(self, ids: np.ndarray, mask: np.ndarray, headers: Mapping[str, str]) -> np.ndarray:
        from tritonclient.grpc import InferInput, InferRequestedOutput

        client = self._clients[next(self._next) % len(self._clients)]
        inputs = [InferInput(name, list(ids.shape), "INT64") for name in ("input_ids", "attention_mask")]
        inputs[0].set_data_from_numpy(np.ascontiguousarray(ids, dtype=np.int64))
        inputs[1].set_data_from_numpy(np.ascontiguousarray(mask, dtype=np.int64))
        result = await client.infer(
            self.settings.model,
            inputs,
            outputs=[InferRequestedOutput("p_correct")],
            client_timeout=self.settings.timeout_s,
            headers=dict(headers),
        )
        return np.asarray(result.as_numpy("p_correct"), dtype=np.float32)

    async def score_ids_async(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, headers: Mapping[str, str] | None = None
    ) -> np.ndarray:
        """P(correct) float32 [batch, len(labels)] from Triton, or from the fallback when Triton is down."""
        scores = await self._try_triton(input_ids, attention_mask, headers)
        return scores if scores is not None else self._fallback(input_ids, attention_mask)

    async def _try_triton(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, headers: Mapping[str, str] | None
    ) -> np.ndarray | None:
        """Triton's answer, or None when it is down or the call failed (then it is marked down)."""
        from tritonclient.utils import InferenceServerException

        if not self.up:
            return None
        carrier = dict(headers) if headers is not None else dict(inject_context({}))
        try:
            parts = [
                await self._infer(
                    input_ids[i : i + self.settings.max_batch],
                    attention_mask[i : i + self.settings.max_batch],
                    carrier,
                )
                for i in range(0, len(input_ids), self.settings.max_batch)
            ]
        except (InferenceServerException, OSError) as exc:
            self._count("failures")
            self._last_error = str(exc)
            self._mark_down()
            return None
        self._count("triton")
        return np.concatenate(parts) if parts else np.zeros((0, len(self._labels)), np.float32)

    def _count(self, key: str) -> None:
        with self._counts_lock:  # worker threads count their fallbacks too
            self.counts[key] += 1

    def _fallback(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        self._count("fallback")
        mode = self.settings.on_unavailable
        if mode == "embedded" and self.fallback is not None:
            return self.fallback.score_ids(input_ids, attention_mask)
        if mode == "default_model" and self.settings.default_model is not None:
            # Only the default model is deemed able, so every policy picks it (pins and filters still apply).
            scores = np.zeros((len(input_ids), len(self._labels)), dtype=np.float32)
            scores[:, self._labels.index(self.settings.default_model)] = 1.0
            return scores
        raise ScorerUnavailableError(f"Triton at {self.settings.url} is unavailable ({self._last_error})")

    def score_ids(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """The ``Scorer`` protocol, for worker threads: the Triton call runs on the scorer's loop, a fallback
        (the embedded scorer) in the calling thread, so a down Triton never blocks the loop with ONNX work."""
        loop = self._loop
        if loop is None or loop.is_closed():
            raise ScorerUnavailableError(
                "the Triton scorer is not started (await scorer.start() in the loop)"
            )
        if _in_loop(loop):
            raise RuntimeError("score_ids blocks: call score_ids_async from the event loop thread")
        scores = None
        if self.up:
            headers = dict(inject_context({}))  # the calling thread's trace context
            future = asyncio.run_coroutine_threadsafe(
                self._try_triton(input_ids, attention_mask, headers), loop
            )
            scores = future.result()
        return scores if scores is not None else self._fallback(input_ids, attention_mask)

    def describe(self) -> dict[str, Any]:
        """State for ``/readyz``: where Triton is, whether it is in use, what answers while it is not."""
        return {
            "backend": "triton",
            "url": self.settings.url,
            "model": self.settings.model,
            "triton_up": self.up,
            "serving": "triton" if self.up else f"fallback:{self.settings.on_unavailable}",
            "counts": dict(self.counts),
        }


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def with_triton(router: Router, settings: TritonScorerSettings) -> tuple[Router, TritonScorer]:
    """The same router scoring through Triton, its embedded scorer kept as the fallback (start the scorer)."""
    scorer = TritonScorer(router.checkpoint.models, settings, fallback=router.scorer)
    return Router(router.pool, router.checkpoint, router.tokenizer, scorer), scorer
