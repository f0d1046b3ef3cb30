"""The torch module every encoder is exported as: a backbone, pooling over the mask, L2 normalisation."""

from __future__ import annotations

from typing import Literal

import torch

Pooling = Literal["mean", "last"]


class PooledEncoder(torch.nn.Module):
    """``(input_ids, attention_mask) -> embedding`` over a transformers backbone's last hidden states.

    ``mean`` averages the hidden states of real tokens; ``last`` takes the last real token (right padding),
    the usual choice for a causal decoder. The result is L2-normalised.
    """

    def __init__(self, backbone: torch.nn.Module, pooling: Pooling = "mean", normalize: bool = True) -> None:
        super().__init__()
        if pooling not in ("mean", "last"):
            raise ValueError(f"pooling must be 'mean' or 'last', not {pooling!r}")
        self.backbone = backbone
        self.pooling = pooling
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "mean":
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        else:
            last = (attention_mask.sum(dim=1) - 1).clamp(min=0)
            pooled = hidden[torch.arange(hidden.shape[0]), last]
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=-1)
        result: torch.Tensor = pooled
        return result
