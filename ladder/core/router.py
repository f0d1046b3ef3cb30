"""The router: tokenise, score, price and decide, for one prompt or many."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ladder.core.checkpoint import Checkpoint
from ladder.core.encoder import EncoderInfo, OnnxEncoder, Tokenizer
from ladder.core.errors import CheckpointError, ConfigWarning
from ladder.core.head import OnnxHead
from ladder.core.home import encoder_dir
from ladder.core.policy import Decision, DecisionOptions, PolicyName, budget_tolerance, decide
from ladder.core.pool import ModelSpec, PoolConfig
from ladder.core.pricing import Pricing, estimate_tokens
from ladder.core.prompt import check_text
from ladder.core.scoring import EmbeddedScorer, Scorer
from ladder.defaults import default_pool_path as default_pool_path  # re-exported


@dataclass(frozen=True)
class RoutedRequest:
    """A decision together with what the scorer saw and how long it took."""

    decision: Decision
    routed_tokens: int
    truncated: bool
    input_tokens: int
    latency_ms: float

    def to_dict(self) -> dict[str, object]:
        return {
            **self.decision.to_dict(),
            "routed_tokens": self.routed_tokens,
            "truncated": self.truncated,
            "input_tokens": self.input_tokens,
            "latency_ms": round(self.latency_ms, 3),
        }


class Router:
    """Scores prompts with a checkpoint and decides with the pool's prices, read at decision time."""

    def __init__(self, pool: PoolConfig, checkpoint: Checkpoint, tokenizer: Tokenizer, scorer: Scorer) -> None:
        checkpoint.require_models([m.checkpoint_label for m in pool.models])
        if tuple(scorer.labels) != checkpoint.models:
            raise CheckpointError(f"scorer labels {scorer.labels} differ from checkpoint models {checkpoint.models}")
        self.pool = pool
        self.checkpoint = checkpoint
        self.tokenizer = tokenizer
        self.scorer = scorer
        self._columns = np.array([checkpoint.models.index(m.checkpoint_label) for m in pool.models])
        self._budget_cache: dict[tuple[float, int], float] = {}

    @classmethod
    def from_pool(cls, pool: PoolConfig, threads: int | None = None) -> Router:
        """The embedded router: encoder and head on ONNX Runtime in this process."""
        checkpoint = Checkpoint.load(pool.routing.checkpoint)
        directory = encoder_dir(pool.routing.encoder)
        info = EncoderInfo.load(directory)
        if info.name != checkpoint.manifest.encoder.name or info.dim != checkpoint.manifest.encoder.dim:
            raise CheckpointError(
                f"checkpoint {checkpoint.directory} was trained on encoder "
                f"{checkpoint.manifest.encoder.name} ({checkpoint.manifest.encoder.dim}-d); the pool uses "
                f"{info.name} ({info.dim}-d)"
            )
        variant = pool.routing.encoder_variant
        trained_on = checkpoint.manifest.encoder.variant
        if variant != trained_on:
            warnings.warn(
                f"checkpoint {checkpoint.directory} was trained and evaluated on the {trained_on} "
                f"encoder; the pool scores with {variant} (routing.encoder_variant): P(correct) differs from the "
                "evaluated one by the int8 encoder's quantisation noise (about 0.015)",
                ConfigWarning,
                stacklevel=2,
            )
        # fp32 and per-token int8 batches are invariant up to float rounding (about 1e-7); a per-tensor int8
        # graph only when its rows run alone, which the encoder does unless batch_invariant is turned off
        per_row = None if pool.routing.batch_invariant else False
        head = OnnxHead(checkpoint.head_path)  # checks the head's tensors before it is fused onto the encoder
        try:
            encoder = OnnxEncoder(directory, variant, threads, per_row=per_row, head=checkpoint.head_path)
        except CheckpointError as exc:  # e.g. a head exported at another ONNX IR or opset version than the encoder
            warnings.warn(f"{exc}; scoring with the two graphs in turn (same scores, slower)", ConfigWarning, 2)
            encoder = OnnxEncoder(directory, variant, threads, per_row=per_row)
        scorer = EmbeddedScorer(encoder, head, checkpoint.models)
        tokenizer = Tokenizer(directory, max_tokens=pool.routing.max_prompt_tokens)
        return cls(pool, checkpoint, tokenizer, scorer)

    def with_pool(self, pool: PoolConfig) -> Router:
        """This router's checkpoint, tokenizer and scorer deciding over ``pool`` (other models, prices or routing
        settings); nothing is reloaded, so the encoder keeps the settings it was loaded with."""
        return Router(pool, self.checkpoint, self.tokenizer, self.scorer)

    @property
    def pricing(self) -> Pricing:
        """Today's pool prices with the output tokens the checkpoint learned per model."""
        return Pricing(self.pool, self.checkpoint.manifest.expected_output_tokens)

    def output_tokens(self, model: ModelSpec) -> float:
        return self.pricing.output_tokens(model)

    def costs(self, input_tokens: int) -> dict[str, float]:
        """Expected USD per request for every pool model, at today's pool prices."""
        return self.pricing.costs(input_tokens)

    def default_options(self) -> DecisionOptions:
        routing = self.pool.routing
        return DecisionOptions(policy=routing.policy, tolerance=routing.tolerance, cost_weight=routing.cost_weight)

    def pool_scores(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """P(correct) for the pool's models, in pool order: [batch, pool models]."""
        return self.scorer.score_ids(input_ids, attention_mask)[:, self._columns]

    def _resolve_budget(self, options: DecisionOptions, input_tokens: int) -> DecisionOptions:
        budget = self.pool.routing.budget_per_1k
        if options.policy is not PolicyName.BUDGET or budget is None:
            return options
        key = (budget, input_tokens)
        if key not in self._budget_cache:
            reference = self.checkpoint.reference_p[:, self._columns]
            costs = np.array(list(self.costs(input_tokens).values()))
            if len(reference) == 0:
                raise CheckpointError("the budget policy needs reference scores; this checkpoint has none")
            self._budget_cache[key] = budget_tolerance(reference, costs, budget / 1000)
        return replace(options, policy=PolicyName.CHEAPEST, tolerance=self._budget_cache[key])

    def decide_scores(self, p_correct: np.ndarray, input_tokens: int, options: DecisionOptions) -> Decision:
        """The pure part: decide from one row of pool-ordered scores."""
        options = self._resolve_budget(options, input_tokens)
        scores = {m.name: float(p) for m, p in zip(self.pool.models, p_correct, strict=True)}
        return decide(scores, self.costs(input_tokens), options)

    def route(
        self, text: str, options: DecisionOptions | None = None, input_tokens: int | None = None
    ) -> RoutedRequest:
        return self.route_many([text], options, [input_tokens] if input_tokens is not None else None)[0]

    def route_many(
        self,
        texts: Sequence[str],
        options: DecisionOptions | None = None,
        input_tokens: Sequence[int] | None = None,
    ) -> list[RoutedRequest]:
        """Route a batch: one encoder pass for all texts, then one decision each."""
        started = time.perf_counter()
        for text in texts:
            check_text(text)
        options = options or self.default_options()
        encoded = self.tokenizer.encode(list(texts))
        scores = self.pool_scores(encoded.input_ids, encoded.attention_mask)
        tokens = list(input_tokens) if input_tokens is not None else [estimate_tokens(t) for t in texts]
        results = []
        for row, text_tokens, length, truncated in zip(scores, tokens, encoded.lengths, encoded.truncated, strict=True):
            decision = self.decide_scores(row, text_tokens, options)
            results.append(
                RoutedRequest(
                    decision=decision,
                    routed_tokens=length,
                    truncated=truncated,
                    input_tokens=text_tokens,
                    latency_ms=(time.perf_counter() - started) * 1000,
                )
            )
        return results
