"""Scorers turn token ids into P(correct) per model; the embedded one runs in-process on ONNX Runtime."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ladder.core.encoder import OnnxEncoder
from ladder.core.head import OnnxHead


class Scorer(Protocol):
    """Anything that scores tokenised prompts: in-process, or a Triton server."""

    @property
    def labels(self) -> tuple[str, ...]: ...

    def score_ids(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """P(correct) as float32 [batch, len(labels)]."""
        ...


class EmbeddedScorer:
    """Encoder and head in this process, both on ONNX Runtime: one call when the encoder was built with the
    head fused onto it, else the encoder's then the head's."""

    def __init__(self, encoder: OnnxEncoder, head: OnnxHead, labels: tuple[str, ...]) -> None:
        self.encoder = encoder
        self.head = head
        self._labels = labels

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

    def score_ids(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        if self.encoder.has_head:
            return self.encoder.score_ids(input_ids, attention_mask)
        return self.head.predict(self.encoder.embed_ids(input_ids, attention_mask))
